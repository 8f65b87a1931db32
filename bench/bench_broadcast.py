"""Time to deliver one message to 1,000 connected clients: trio_ws's Hub next to the websockets
library's ``broadcast()`` on its trio server, in one run.

    python -m bench.bench_broadcast                 # 1,000 clients, 1 KiB, 7 rounds
    python -m bench.bench_broadcast --clients 200

The server (pinned to core 0) keeps every client in one room; one client sends "go" and the server
publishes a 1 KiB message to the room. The load generator (core 1, raw non-blocking sockets) times
from sending "go" to the last of the clients having the whole message; median of the rounds.
Compression is off on both servers, so each can send the same frame to everyone.
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
import time
from pathlib import Path

from trio_ws.protocol import encode_frame

from .bench_echo import handshake

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ["trio_ws", "websockets-trio"]
PAYLOAD = "m" * 1024


async def serve_trio_ws(port: int) -> None:
    import trio

    from trio_ws import Hub, WebSocket, serve_websocket

    hub = Hub(queue_size=16)

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        async with hub.subscribe(ws, "all"):
            async for _ in ws.iter_text():
                await hub.publish("all", PAYLOAD)

    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_websocket(
                handler, "127.0.0.1", port, compression=None, ping_interval=None, task_status=task_status
            )
        )
        print("READY", flush=True)


async def serve_websockets_trio(port: int) -> None:
    import trio
    from websockets.exceptions import ConnectionClosed
    from websockets.trio.server import ServerConnection, broadcast, serve

    connections: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        connections.add(ws)
        try:
            async for _ in ws:
                await broadcast(connections, PAYLOAD)
        except ConnectionClosed:
            pass
        finally:
            connections.discard(ws)

    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve(
                handler,
                port,
                host="127.0.0.1",
                compression=None,
                ping_interval=None,
                task_status=task_status,
            )
        )
        print("READY", flush=True)


def round_trip(clients: list[socket.socket], selector: selectors.BaseSelector, expected: int) -> float:
    """Send "go" from the first client; seconds until every client has read ``expected`` bytes."""
    got = dict.fromkeys(clients, 0)
    waiting = len(clients)
    start = time.perf_counter()
    clients[0].send(encode_frame(0x1, b"go", mask=b"\x01\x02\x03\x04"))
    while waiting:
        for key, _ in selector.select(timeout=10):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            data = sock.recv(65536)
            if not data:
                raise RuntimeError("server closed a connection")
            before = got[sock]
            got[sock] += len(data)
            if before < expected <= got[sock]:
                waiting -= 1
    return time.perf_counter() - start


def run(name: str, port: int, count: int, rounds: int) -> list[float]:
    pin = shutil.which("taskset") and (os.cpu_count() or 1) > 1
    command = [sys.executable, "-m", "bench.bench_broadcast", "--serve", name, str(port)]
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *command] if pin else command, cwd=ROOT, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"READY":
        raise RuntimeError(f"{name} did not start")
    clients = []
    selector = selectors.DefaultSelector()
    try:
        for _ in range(count):
            sock, _ = handshake(port)
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
            clients.append(sock)
        expected = len(encode_frame(0x1, PAYLOAD.encode()))
        round_trip(clients, selector, expected)  # warm-up
        return [round_trip(clients, selector, expected) for _ in range(rounds)]
    finally:
        for sock in clients:
            sock.close()
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    results = {}
    port = 22765
    for name in SERVERS:
        port += 1
        times = run(name, port, args.clients, args.rounds)
        results[name] = statistics.median(times)
        print(f"  {name}: {[round(t * 1000, 1) for t in times]} ms", file=sys.stderr)
    base = results["websockets-trio"]
    print(f"\nOne 1 KiB message to {args.clients:,} clients, median of {args.rounds} rounds:\n")
    print("| server | ms to the last client | ratio to websockets-trio |")
    print("| --- | --- | --- |")
    for name, seconds in results.items():
        print(f"| {name} | {seconds * 1000:.1f} | {seconds / base:.2f} |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        import trio

        serve = serve_trio_ws if sys.argv[2] == "trio_ws" else serve_websockets_trio
        trio.run(serve, int(sys.argv[3]))
    else:
        main()
