"""Refused handshakes per second one server process sustains while it keeps serving a normal client.

    python -m bench.bench_rejections               # 5 s per defence

The server (pinned to core 0) has a rate limit per client address (``RateLimit(rps=20, burst=20)``)
and an origin list. A flood of handshakes from 127.0.0.1 (64 at a time, raw non-blocking sockets,
pinned to core 1) is refused — 429 by the rate limit, or 403 for a foreign ``Origin`` — while a
normal client from 127.0.0.2 connects, echoes one message and closes, over and over. Printed: the
refusals per second, and the normal client's connect-to-echo time (median and 99th percentile).
"""

from __future__ import annotations

import argparse
import os
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from trio_ws.protocol import build_request, encode_frame

ROOT = Path(__file__).resolve().parent.parent


async def serve(port: int) -> None:
    import trio

    from trio_ws import RateLimit, WebSocket, serve_websocket

    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        async for message in ws.iter_text():
            await ws.send_text(message)

    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_websocket(
                echo,
                "127.0.0.1",
                port,
                origins=["https://app.example.com"],
                rate_limit=RateLimit(rps=20, burst=20),
                ping_interval=None,
                task_status=task_status,
            )
        )
        print("READY", flush=True)


def flood(port: int, request: bytes, seconds: float, width: int, counts: dict[str, int]) -> None:
    """Keep ``width`` handshakes in flight from 127.0.0.1 for ``seconds``; count answers by status."""
    selector = selectors.DefaultSelector()
    buffers: dict[socket.socket, bytes] = {}

    def start() -> None:
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        buffers[sock] = b""
        selector.register(sock, selectors.EVENT_WRITE)

    deadline = time.monotonic() + seconds
    for _ in range(width):
        start()
    while buffers:
        for key, events in selector.select(timeout=1):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if events & selectors.EVENT_WRITE:
                sock.send(request)
                selector.modify(sock, selectors.EVENT_READ)
                continue
            try:
                chunk = sock.recv(65536)
            except ConnectionError:
                chunk = b""
            buffers[sock] += chunk
            if chunk and b"\r\n\r\n" not in buffers[sock]:
                continue
            status = buffers[sock][9:12].decode() or "dropped"
            counts[status] = counts.get(status, 0) + 1
            selector.unregister(sock)
            sock.close()
            del buffers[sock]
            if time.monotonic() < deadline:
                start()


def normal_client(port: int, stop: threading.Event, times: list[float], failures: list[str]) -> None:
    request, _ = build_request(f"127.0.0.1:{port}", "/")
    while not stop.is_set():
        start = time.monotonic()
        try:
            with socket.create_connection(
                ("127.0.0.1", port), timeout=10, source_address=("127.0.0.2", 0)
            ) as sock:
                sock.sendall(request)
                head = b""
                while b"\r\n\r\n" not in head:
                    head += sock.recv(4096)
                if not head.startswith(b"HTTP/1.1 101"):
                    failures.append(head.split(b"\r\n")[0].decode())
                    continue
                sock.sendall(encode_frame(0x1, b"hello", mask=b"\x01\x02\x03\x04"))
                echo = b""
                while len(echo) < 7:
                    echo += sock.recv(4096)
                times.append(time.monotonic() - start)
                sock.sendall(encode_frame(0x8, b"\x03\xe8", mask=b"\x01\x02\x03\x04"))
        except OSError as exc:
            failures.append(repr(exc))
        time.sleep(0.1)  # a normal client's pace (10 a second, within the limit), not a second flood


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--width", type=int, default=64)
    args = parser.parse_args()
    pin = shutil.which("taskset") and (os.cpu_count() or 1) > 1
    print("| defence | refusals/s | status counts | normal client: echoes, p50 / p99 ms, failures |")
    print("| --- | --- | --- | --- |")
    port = 21765
    for label, headers in (
        ("rate limit (429)", [("Origin", "https://app.example.com")]),
        ("origin (403)", [("Origin", "https://evil.example")]),
    ):
        port += 1
        command = [sys.executable, "-m", "bench.bench_rejections", "--serve", str(port)]
        proc = subprocess.Popen(
            ["taskset", "-c", "0", *command] if pin else command, cwd=ROOT, stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"READY":
            raise RuntimeError("the server did not start")
        try:
            if pin:
                os.sched_setaffinity(0, {1})
            request, _ = build_request(f"127.0.0.1:{port}", "/", headers=headers)
            counts: dict[str, int] = {}
            times: list[float] = []
            failures: list[str] = []
            stop = threading.Event()
            client = threading.Thread(target=normal_client, args=(port, stop, times, failures))
            client.start()
            started = time.monotonic()
            flood(port, request, args.seconds, args.width, counts)
            elapsed = time.monotonic() - started
            stop.set()
            client.join()
        finally:
            proc.kill()
            proc.wait()
        refused = sum(n for status, n in counts.items() if status in ("403", "429"))
        p50 = statistics.median(times) * 1000 if times else float("nan")
        p99 = sorted(times)[int(len(times) * 0.99)] * 1000 if times else float("nan")
        print(
            f"| {label} | {refused / elapsed:,.0f} | {dict(sorted(counts.items()))} | "
            f"{len(times)}, {p50:.1f} / {p99:.1f}, {len(failures)} |"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        import trio

        trio.run(serve, int(sys.argv[2]))
    else:
        main()
