"""Abusive clients against trio_ws and its peers: what each server does, its memory, a bystander's latency.

    python -m bench.bench_attacks                                  # trio_ws and websockets-asyncio
    python -m bench.bench_attacks --servers trio_ws --attacks 3 6  # some attacks, one server
    python -m bench.bench_attacks --scale 0.01 --time-scale 0.2    # a quick check that every attack runs

Each attack meets a fresh server process (``python -m bench.bench_attacks --serve NAME PORT``) pinned
to core 0 (``taskset``, when there is one); the attacker runs here, pinned to core 1, with raw sockets
and hand-built masked frames, all on 127.0.0.1. The servers echo text and binary messages, except on
the path ``/deaf``, where the handler accepts and never receives. Compression and keepalive pings are
off, and the largest message is 16 MiB.

1. header whitespace: 10 handshakes at once, each with a header value of 16,000 spaces;
2. extension whitespace: the same spaces inside a ``Sec-WebSocket-Extensions`` parameter;
3. ping flood: 125-byte pings as fast as possible for 3 s, never reading the pongs;
4. empty-message flood: up to 3,000,000 empty text messages to the deaf handler, never reading;
5. one-byte fragments: one unfinished binary message of up to 1,000,000 one-byte fragments;
6. big messages: 200 connections each send a 16 MiB frame to the deaf handler, 64 KiB at a time, for 5 s;
7. hopeless request: the byte 0x16 (a TLS record) and 200 random bytes on the plain port.

Printed as a Markdown table, per attack and server: what the server did (its answer and how soon, the
bytes it took before TCP pushed back, the close code it sent); its resident memory in MiB before, at
the peak during (the larger of VmRSS sampled every 50 ms and the kernel's high-water mark, reset at the
start) and 1 s after the attack; and the echo round-trip time of a bystander, a separate connection
echoing a 16-byte message every 20 ms throughout. ``--scale`` multiplies the counts (and caps the ping
flood at 10,000,000 pings), ``--time-scale`` the durations. A flood ends at its count, at its duration,
or when one send has waited 1 s (TCP pushback).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import random
import select
import selectors
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ["trio_ws", "websockets-asyncio"]
MAX_SIZE = 2**24
MASK = b"\x01\x02\x03\x04"
ZERO_MASK = b"\0\0\0\0"  # a valid masking key that leaves the payload as it is: big frames cost nothing
PIN = bool(shutil.which("taskset")) and (os.cpu_count() or 1) > 1


async def serve_trio_ws(port: int) -> None:
    import trio

    from trio_ws import WebSocket, serve_websocket

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        if ws.path == "/deaf":
            await trio.sleep_forever()
        while True:
            message = await ws.receive()
            if isinstance(message, str):
                await ws.send_text(message)
            else:
                await ws.send_bytes(message)

    options: dict[str, Any] = {"max_message_size": MAX_SIZE, "ping_interval": None, "compression": None}
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(serve_websocket, handler, "127.0.0.1", port, **options))
        print("READY", flush=True)


def serve_websockets_asyncio(port: int) -> None:
    import asyncio

    from websockets.asyncio.server import ServerConnection, serve

    async def handler(ws: ServerConnection) -> None:
        if ws.request is not None and ws.request.path == "/deaf":
            await ws.wait_closed()  # never receives; ends with the connection
            return
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        async with serve(
            handler, "127.0.0.1", port, compression=None, ping_interval=None, max_size=MAX_SIZE
        ) as server:
            print("READY", flush=True)
            await server.serve_forever()

    asyncio.run(main())


def start_server(name: str, port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "bench.bench_attacks", "--serve", name, str(port)]
    if PIN:
        command = ["taskset", "-c", "0", *command]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=log)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline() if ready else b""
    if line.strip() != b"READY":
        proc.kill()
        proc.wait()
        raise RuntimeError(f"{name} did not start: {last_line(log)}")
    return proc


def last_line(log: IO[bytes]) -> str:
    log.seek(0)
    return (log.read().decode(errors="replace").strip().splitlines() or ["(no output)"])[-1]


def memory_mib(pid: int, key: str = "VmRSS") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class Sampler(threading.Thread):
    """The peak of a process's VmRSS, sampled every 50 ms, and of VmHWM (reset by :meth:`reset`)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.halt = pid, 0.0, threading.Event()

    def reset(self) -> None:
        self.peak = memory_mib(self.pid)
        with contextlib.suppress(OSError):  # "5" resets VmHWM to the current RSS
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def run(self) -> None:
        while not self.halt.wait(0.05):
            self.peak = max(self.peak, memory_mib(self.pid))

    def stop(self) -> float:
        self.halt.set()
        self.join()
        return max(self.peak, memory_mib(self.pid, "VmHWM"))


def frame_header(opcode: int, length: int, fin: bool = True, mask: bytes = ZERO_MASK) -> bytes:
    b0 = opcode | (0x80 if fin else 0)
    if length < 126:
        return struct.pack("!BB", b0, 0x80 | length) + mask
    if length < 65536:
        return struct.pack("!BBH", b0, 0xFE, length) + mask
    return struct.pack("!BBQ", b0, 0xFF, length) + mask


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A client frame, masked with a non-zero key as any browser's would be."""
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return frame_header(opcode, len(payload), fin, MASK) + masked


def request(port: int, path: str = "/", extra: str = "") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


def upgrade(port: int, path: str = "/") -> socket.socket:
    """A connected socket past the opening handshake (5 s timeout on every operation)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(request(port, path))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("handshake: connection closed")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        sock.close()
        raise RuntimeError(f"handshake: {head[: head.find(b' ', 9)]!r}")
    return sock


def watch(socks: list[socket.socket], wait: float, feed: Callable[[socket.socket, bytes], str]) -> list[str]:
    """Read the sockets until ``feed`` (given b"" at the end) says what became of each, for ``wait`` s."""
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, sock)
    found: dict[socket.socket, str] = {}
    deadline = time.monotonic() + wait
    while len(found) < len(socks) and (left := deadline - time.monotonic()) > 0:
        for key, _ in selector.select(left):
            try:
                outcome = feed(key.data, key.data.recv(1 << 20))
            except BlockingIOError:
                continue
            except ConnectionError:
                outcome = "reset"
            if outcome:
                found[key.data] = outcome
                selector.unregister(key.data)
    selector.close()
    return [found.get(sock, "") for sock in socks]


def burst(ctx: Ctx, data: bytes, count: int) -> str:
    """Send ``data`` on ``count`` new connections at once: how each was answered and how soon."""
    socks = [socket.create_connection(("127.0.0.1", ctx.port), timeout=5) for _ in range(count)]
    starts: list[float] = []
    heads, took = dict.fromkeys(socks, b""), dict[socket.socket, float]()

    def feed(sock: socket.socket, chunk: bytes) -> str:
        heads[sock] += chunk
        took[sock] = (time.monotonic() - starts[socks.index(sock)]) * 1000
        if chunk and b"\r\n" not in heads[sock]:
            return ""
        if heads[sock].startswith(b"HTTP/"):
            return heads[sock].split()[1].decode(errors="replace")
        return f"answer {heads[sock][:20]!r}" if heads[sock] else "closed"

    wait = ctx.seconds(5)
    try:
        for sock in socks:
            starts.append(time.monotonic())
            sock.sendall(data)
        outcomes = watch(socks, wait, feed)
    finally:
        for sock in socks:
            sock.close()
    parts = []
    for outcome in sorted(set(outcomes)):
        times = sorted(took.get(s, wait * 1000) for s, o in zip(socks, outcomes, strict=True) if o == outcome)
        span = f"{times[0]:.1f} ms" if len(times) == 1 else f"{times[0]:.1f} to {times[-1]:.1f} ms"
        text = f"{outcome} in {span}" if outcome else f"no answer in {wait:g} s"
        parts.append(text + (f" (x{len(times)})" if len(times) > 1 else ""))
    return ", ".join(parts)


def close_codes(socks: list[socket.socket], wait: float) -> str:
    """What became of each connection: "closed CODE" (a close frame), "dropped", "reset", "still open"."""
    state = {sock: (bytearray(), 0) for sock in socks}  # unparsed bytes, payload bytes still to skip

    def feed(sock: socket.socket, chunk: bytes) -> str:
        buf, skip = state[sock]
        buf += chunk
        while True:  # walk the server's (unmasked) frames to a close frame
            dropped = min(skip, len(buf))
            del buf[:dropped]
            skip -= dropped
            if skip or len(buf) < 2:
                break
            opcode, n, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if n >= 126:
                at = 4 if n == 126 else 10
                if len(buf) < at:
                    break
                n = int.from_bytes(buf[2:at], "big")
            if opcode == 8:
                if len(buf) < at + min(n, 2):
                    break
                return f"closed {int.from_bytes(buf[at : at + 2], 'big') if n >= 2 else 1005}"
            del buf[:at]
            skip = n
        state[sock] = (buf, skip)
        return "" if chunk else "dropped"

    counts = Counter(outcome or "still open" for outcome in watch(socks, wait, feed))
    return ", ".join(k if len(socks) == 1 else f"{k} x{n}" for k, n in sorted(counts.items()))


def flood(sock: socket.socket, unit: bytes, count: int, seconds: float) -> tuple[int, str, float]:
    """Send ``unit`` ``count`` times, never reading: the bytes the kernel took, why it ended, and when."""
    batch = unit * max(1, min(count, 65536 // len(unit)))
    total, sent = len(unit) * count, 0
    sock.settimeout(1.0)
    start = last = time.monotonic()
    reason = "all taken:"
    try:
        while sent < total:
            if last - start >= seconds:
                reason = f"no pushback in {seconds:g} s:"
                break
            offset = sent % len(batch)
            sent += sock.send(memoryview(batch)[offset : offset + total - sent])
            last = time.monotonic()
    except TimeoutError:
        reason = "TCP pushback after"
    except OSError as exc:
        reason = f"send failed ({type(exc).__name__}) after"
    return sent, reason, last - start


def flood_attack(ctx: Ctx, path: str, unit: bytes, count: int, noun: str, first: bytes = b"") -> str:
    """Upgrade on ``path``, send ``first`` then ``unit`` up to ``count`` times for 3 s, never reading."""
    with upgrade(ctx.port, path) as sock:
        sock.sendall(first)
        sent, reason, took = flood(sock, unit, count, ctx.seconds(3))
        outcome = f"{reason} {sent / 1e6:.1f} MB ({sent // len(unit):,} {noun} in {took:.2f} s)"
        return f"{outcome}; {close_codes([sock], 1.0)}"


class Bystander(threading.Thread):
    """A normal client on its own connection: a 16-byte message every 20 ms, and its echo's delay."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = upgrade(port)
        self.rtts: list[float] = []
        self.problem = ""
        self.halt = threading.Event()

    def run(self) -> None:
        payload = b"0123456789abcdef"
        message, echo = frame(2, payload), bytes((0x82, len(payload))) + payload
        try:
            while not self.halt.is_set():
                start = time.perf_counter()
                self.sock.sendall(message)
                got = b""
                while len(got) < len(echo):
                    chunk = self.sock.recv(len(echo) - len(got))
                    if not chunk:
                        raise ConnectionError("closed")
                    got += chunk
                if got != echo:
                    raise RuntimeError(f"wrong echo {got!r}")
                self.rtts.append((time.perf_counter() - start) * 1000)
                self.halt.wait(max(0.0, 0.02 - (time.perf_counter() - start)))
        except TimeoutError:
            self.problem = "no echo in 5 s"
        except (OSError, RuntimeError) as exc:
            self.problem = f"error: {exc!r}"
        finally:
            self.sock.close()

    def stop(self) -> str:
        self.halt.set()
        self.join(10)
        rtts = self.rtts
        cell = f"{statistics.median(rtts):.1f} / {max(rtts):.1f} ({len(rtts)})" if rtts else "none"
        return f"{cell}; {self.problem}" if self.problem else cell


@dataclass
class Ctx:
    port: int
    scale: float
    time_scale: float

    def count(self, n: int) -> int:
        return max(1, round(n * self.scale))

    def seconds(self, s: float) -> float:
        return s * self.time_scale


def big_messages(ctx: Ctx) -> str:
    socks = [upgrade(ctx.port, "/deaf") for _ in range(ctx.count(200))]
    try:
        sent = dict.fromkeys(socks, 0)
        moved = dict.fromkeys(socks, time.monotonic())
        failed: set[socket.socket] = set()
        selector = selectors.DefaultSelector()
        for sock in socks:
            sock.sendall(frame_header(2, MAX_SIZE))
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_WRITE, sock)
        chunk = memoryview(bytes(65536))
        deadline = time.monotonic() + ctx.seconds(5)
        while selector.get_map() and (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(min(left, 0.1)):
                sock = key.data
                try:
                    sent[sock] += sock.send(chunk[: MAX_SIZE - sent[sock]])
                except BlockingIOError:
                    continue
                except OSError:
                    failed.add(sock)
                    selector.unregister(sock)
                    continue
                moved[sock] = time.monotonic()
                if sent[sock] == MAX_SIZE:
                    selector.unregister(sock)
        selector.close()
        now = time.monotonic()
        whole = sum(n == MAX_SIZE for n in sent.values())
        stuck = sum(n < MAX_SIZE and s not in failed and now - moved[s] >= 1 for s, n in sent.items())
        return (
            f"{sum(sent.values()) / 1e6:,.0f} MB taken from {len(socks)} conns: {whole} whole, "
            f"{stuck} pushed back ≥1 s, {len(failed)} send failed; {close_codes(socks, 1.0)}"
        )
    finally:
        for sock in socks:
            sock.close()


WHITESPACE = " " * 16000
ATTACKS: dict[str, Callable[[Ctx], str]] = {
    "1. header whitespace": lambda c: burst(
        c, request(c.port, extra=f"X-A: a{WHITESPACE}b\r\n"), c.count(10)
    ),
    "2. extension whitespace": lambda c: burst(
        c,
        request(c.port, extra=f"Sec-WebSocket-Extensions: permessage-deflate; x={WHITESPACE}1\r\n"),
        c.count(10),
    ),
    "3. ping flood": lambda c: flood_attack(c, "/", frame(9, bytes(125)), c.count(10_000_000), "pings"),
    "4. empty messages, deaf handler": lambda c: flood_attack(
        c, "/deaf", frame(1, b""), c.count(3_000_000), "messages"
    ),
    "5. one-byte fragments": lambda c: flood_attack(
        c, "/", frame(0, b"x", fin=False), c.count(1_000_000) - 1, "fragments", frame(2, b"x", fin=False)
    ),
    "6. big messages, deaf handler": big_messages,
    "7. hopeless request": lambda c: burst(c, b"\x16" + random.Random(7).randbytes(200), 1),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def measure(name: str, attack: Callable[[Ctx], str], args: argparse.Namespace) -> tuple[str, str, str]:
    """One attack on a fresh server: what it did, its memory, the bystander's round trips."""
    ctx = Ctx(free_port(), args.scale, args.time_scale)
    with tempfile.TemporaryFile() as log:
        try:
            proc = start_server(name, ctx.port, log)
        except Exception as exc:
            return f"error: {exc}", "-", "-"
        try:
            bystander = Bystander(ctx.port)
            sampler = Sampler(proc.pid)
            before = memory_mib(proc.pid)
            sampler.reset()
            sampler.start()
            bystander.start()
            time.sleep(0.1)
            try:
                outcome = attack(ctx)
            except Exception as exc:
                outcome = f"error: {exc!r}"
            rtt = bystander.stop()
            time.sleep(ctx.seconds(1))
            after = memory_mib(proc.pid)
            peak = sampler.stop()
            if proc.poll() is not None:
                outcome += f"; server exited ({proc.returncode}): {last_line(log)}"
            return outcome, f"{before:.0f} / {peak:.0f} / {after:.0f}", rtt
        except Exception as exc:
            return f"error: {exc!r}", "-", "-"
        finally:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--servers", nargs="+", default=SERVERS, choices=SERVERS)
    parser.add_argument("--attacks", nargs="+", type=int, default=range(1, len(ATTACKS) + 1), metavar="N")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the counts")
    parser.add_argument("--time-scale", type=float, default=1.0, help="multiply the durations")
    args = parser.parse_args()
    if PIN:
        os.sched_setaffinity(0, {1})
    rows = []
    for number in args.attacks:
        label = list(ATTACKS)[number - 1]
        attack = ATTACKS[label]
        for name in args.servers:
            cells = measure(name, attack, args)
            print(f"  {label} / {name}: {cells[0]}", file=sys.stderr)
            rows.append((label, name, *cells))
    pinning = "; server on core 0, attacker on core 1" if PIN else ""
    print(f"\nscale {args.scale:g}, time scale {args.time_scale:g}{pinning}.\n")
    print(
        "| attack | server | what the server did | RSS MiB before / peak / after "
        "| bystander echo ms: median / max (count) |"
    )
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        if sys.argv[2] == "websockets-asyncio":
            serve_websockets_asyncio(int(sys.argv[3]))
        else:
            import trio

            trio.run(serve_trio_ws, int(sys.argv[3]))
    else:
        main()
