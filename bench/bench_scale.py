"""Ten thousand concurrent connections on one server process, side by side.

    python -m bench.bench_scale                       # 10,000 connections, trio_ws and its peers
    python -m bench.bench_scale --connections 2000 --servers trio_ws

For each server (its own process pinned to core 0, the load generator here on core 1, both with the
file limit raised to what the system allows): open ``--connections`` WebSocket connections, at most
``--window`` handshakes outstanding at a time, and hold them all open; then one 16-byte message to
every connection at once, every echo checked; then close them all (closing handshake), again
``--window`` at a time. Printed: the handshake rate while the connections pile up, the server's
resident memory per held connection, the time for one message to reach every connection and come
back, and the closing rate. Every connection stays open until the last has been opened, so the
last handshakes are made by a server that already holds all the others.
"""

from __future__ import annotations

import argparse
import resource
import selectors
import socket
import sys
import time
from collections.abc import Callable

from trio_ws.protocol import encode_frame

from .bench_echo import frames, start_server
from .bench_memory import rss

SERVERS = ["trio_ws", "websockets-trio", "websockets-asyncio", "picows"]
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
CLOSE = encode_frame(0x8, b"\x03\xe8", mask=b"\x01\x02\x03\x04")


def raise_file_limit() -> int:
    """Raise this process's open-file limit to its hard limit; return it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def pump(
    count: int,
    window: int,
    begin: Callable[[int], socket.socket],
    done: Callable[[socket.socket, bytes], bool],
) -> float:
    """Run ``count`` exchanges, ``window`` at a time: ``begin(i)`` starts one on a socket, and
    ``done(sock, data_so_far)`` says whether it is over. Returns the seconds taken."""
    selector = selectors.DefaultSelector()
    received: dict[socket.socket, bytes] = {}
    started = finished = 0
    t0 = time.perf_counter()
    while finished < count:
        while started < count and started - finished < window:
            sock = begin(started)
            started += 1
            received[sock] = b""
            selector.register(sock, selectors.EVENT_READ)
        for key, _ in selector.select(10):
            sock = key.fileobj  # type: ignore[assignment]
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:  # a reset after the close: over as well
                chunk = b""
            data = received[sock] = received[sock] + chunk
            if done(sock, data) or not chunk:
                selector.unregister(sock)
                del received[sock]
                finished += 1
    selector.close()
    return time.perf_counter() - t0


def measure(name: str, port: int, connections: int, window: int) -> dict[str, float]:
    proc = start_server(name, port)
    socks: list[socket.socket] = []
    request = (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()

    def connect(_: int) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(request)
        sock.setblocking(False)
        socks.append(sock)
        return sock

    def upgraded(_: socket.socket, data: bytes) -> bool:
        if b"\r\n\r\n" not in data:
            return False
        if not data.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"{name}: handshake refused: {data[:40]!r}")
        return True

    frame, expected = frames(16)

    def echoed(_: socket.socket, data: bytes) -> bool:
        if len(data) >= len(expected) and data != expected:
            raise RuntimeError(f"{name}: echo mismatch")
        return data == expected

    warm = connect(0)
    socks.clear()
    try:
        pump(1, 1, lambda _: warm, upgraded)
        base = rss(proc.pid)
        opening = pump(connections, window, connect, upgraded)
        held = rss(proc.pid)
        for sock in socks:
            sock.sendall(frame)
        message = pump(connections, connections, lambda i: socks[i], echoed)

        def close(i: int) -> socket.socket:
            socks[i].sendall(CLOSE)
            return socks[i]

        closing = pump(connections, window, close, lambda _, data: False)
    finally:
        for sock in [warm, *socks]:
            sock.close()
        proc.kill()
        proc.wait()
    return {
        "handshakes/s": connections / opening,
        "KiB per connection": (held - base) / connections / 1024,
        "one message to all and back, ms": message * 1e3,
        "closes/s": connections / closing,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--servers", nargs="*", default=SERVERS)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=100, help="handshakes outstanding at a time")
    args = parser.parse_args()
    limit = raise_file_limit()
    if limit < args.connections + 100:
        raise SystemExit(f"the open-file limit is {limit}: too low for {args.connections:,} connections")
    results = {}
    for port, name in enumerate(args.servers, 21765):
        results[name] = measure(name, port, args.connections, args.window)
        print(f"  {name:20} " + ", ".join(f"{k} {v:,.1f}" for k, v in results[name].items()), file=sys.stderr)
    keys = list(next(iter(results.values())))
    print(
        f"\n{args.connections:,} connections held at once, {args.window} handshakes outstanding at a time.\n"
    )
    print("| server | " + " | ".join(keys) + " |")
    print("| --- |" + " --- |" * len(keys))
    for name, row in results.items():
        print(f"| {name} | " + " | ".join(f"{row[k]:,.1f}" for k in keys) + " |")


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    main()
