"""Echo throughput of trio_ws next to its peers, measured in one run.

    python -m bench.bench_echo                 # all servers, 16 B / 1 KiB / 64 KiB, 1 connection
    python -m bench.bench_echo --quick         # fewer repeats

Each server runs in its own process pinned to core 0 (``taskset``, when there is one); the load generator
runs here, pinned to core 1. The generator is a raw socket with pre-built masked frames and a window of
messages in flight, checking every echoed byte, so it costs far less per message than any server: its
CPU time and the server's are printed to show which side is the bottleneck.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from trio_ws.protocol import accept_key, encode_frame

from .servers import NAMES

ROOT = Path(__file__).resolve().parent.parent


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: The server name that runs trio_ws from another checkout (``python -m bench --baseline DIR``).
BASELINE = "trio_ws-baseline"


def start_server(name: str, port: int, *extra: str, module: str = "bench.servers") -> subprocess.Popen[bytes]:
    """``python -m {module} NAME PORT EXTRA...`` on core 0, once it printed ``READY``."""
    cwd, env = ROOT, None
    if name == BASELINE:  # the same server, from the checkout in TRIO_WS_BASELINE
        cwd = Path(os.environ["TRIO_WS_BASELINE"])
        env = {**os.environ, "PYTHONPATH": str(cwd)}
        name = "trio_ws"
    command = [sys.executable, "-m", "bench.servers", name, str(port), *extra]
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        command = ["taskset", "-c", "0", *command]
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != b"READY":
        proc.kill()
        raise RuntimeError(f"{name} did not start: {line!r}")
    return proc


def handshake(port: int, extensions: str | None = None) -> tuple[socket.socket, bytes]:
    """A connected, upgraded socket, and the response head (to read negotiated extensions)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    offer = f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else ""
    sock.sendall(
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    head, _, rest = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    assert accept_key(key).encode() in head
    assert not rest
    return sock, head


def close(sock: socket.socket) -> None:
    """Send a close frame (1000), read until the server closes, and close the socket."""
    sock.settimeout(2)
    sock.sendall(encode_frame(0x8, b"\x03\xe8", mask=b"\x01\x02\x03\x04"))
    try:
        while sock.recv(1 << 20):
            pass
    except OSError:
        pass
    sock.close()


def frames(size: int) -> tuple[bytes, bytes]:
    """A masked binary frame of ``size`` bytes, and its echo as the server sends it (unmasked)."""
    payload = bytes(i % 251 for i in range(size))
    return encode_frame(0x2, payload, mask=b"\x01\x02\x03\x04"), encode_frame(0x2, payload)


def take_echoes(buf: bytearray, expected: bytes) -> int:
    """Remove the complete echoes at the start of ``buf``, checking every byte; return how many."""
    n = len(expected)
    complete = len(buf) // n
    if complete:
        if buf[: complete * n] != expected * complete:
            raise RuntimeError("echo mismatch")
        del buf[: complete * n]
    return complete


def echo_run(port: int, size: int, in_flight: int, seconds: float) -> tuple[float, float]:
    """Messages/s for one connection with ``in_flight`` messages outstanding; and client CPU s.

    The generator reads into one buffer with ``recv_into``, checks each echo against the expected
    bytes and sends from a prepared batch of frames: one copy per echo to compare it, so
    that at 64 KiB and more it stays well below the server's CPU (which it did not when it joined
    what it read into a growing ``bytearray``)."""
    sock, _ = handshake(port)
    frame, expected = frames(size)
    n = len(expected)
    batch = memoryview(frame * in_flight)
    buf = bytearray(in_flight * n + (1 << 20))
    view = memoryview(buf)
    sock.sendall(batch)
    sent, done, have = in_flight, 0, 0
    cpu0 = time.process_time()
    start = time.perf_counter()
    deadline = start + seconds
    while done < sent:  # after the deadline, only collect what is still in flight
        got = sock.recv_into(view[have:])
        if not got:
            raise RuntimeError("server closed the connection")
        have += got
        complete = have // n
        if complete:
            for k in range(complete):
                if buf[k * n : (k + 1) * n] != expected:  # (a memoryview compares item by item)
                    raise RuntimeError("echo mismatch")
            rest = have - complete * n
            view[:rest] = view[complete * n : have]
            have = rest
            done += complete
            if time.perf_counter() < deadline:
                sock.sendall(batch[: complete * len(frame)])
                sent += complete
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    close(sock)
    return done / elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servers", nargs="*", default=NAMES)
    parser.add_argument("--sizes", nargs="*", type=int, default=[16, 1024, 65536])
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 repeat of 2 s")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.seconds = 1, 2.0
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    results: dict[tuple[str, int], float] = {}
    cpu_note: dict[tuple[str, int], tuple[float, float]] = {}
    port = 18765
    for name in args.servers:
        for size in args.sizes:
            rates = []
            for _ in range(args.repeats):
                port += 1
                proc = start_server(name, port)
                try:
                    server_cpu0 = cpu_seconds(proc.pid)
                    t0 = time.perf_counter()
                    rate, client_cpu = echo_run(port, size, args.in_flight, args.seconds)
                    wall = time.perf_counter() - t0
                    server_cpu = cpu_seconds(proc.pid) - server_cpu0
                finally:
                    proc.kill()
                    proc.wait()
                rates.append(rate)
                cpu_note[name, size] = (server_cpu / wall, client_cpu / wall)
            results[name, size] = statistics.median(rates)
            print(f"  {name:20} {size:>6} B: {results[name, size]:>10,.0f} msg/s", file=sys.stderr)

    base = "websockets-trio"
    print(
        f"\n1 connection, {args.in_flight} messages in flight, median of {args.repeats} runs "
        f"of {args.seconds:g} s; server on core 0, load generator on core 1.\n"
    )
    header = "| server | " + " | ".join(f"{s} B msg/s" for s in args.sizes)
    header += f" | ratio to {base} | server CPU / client CPU |"
    print(header)
    print("| --- |" + " --- |" * (len(args.sizes) + 2))
    for name in args.servers:
        cells = [f"{results[name, s]:,.0f}" for s in args.sizes]
        ratios = (
            " / ".join(f"{results[name, s] / results[base, s]:.2f}" for s in args.sizes)
            if base in args.servers
            else "-"
        )
        cpu = " / ".join(f"{cpu_note[name, s][0]:.0%}·{cpu_note[name, s][1]:.0%}" for s in args.sizes)
        print(f"| {name} | " + " | ".join(cells) + f" | {ratios} | {cpu} |")


if __name__ == "__main__":
    main()
