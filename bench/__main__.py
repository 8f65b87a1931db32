"""The performance budget in one run: ``python -m bench`` (``--quick`` for one repeat of 2 s).

Every cell runs each server in its own process pinned to core 0; the load generator (this process,
raw sockets with pre-built masked frames, checking every echoed byte) is pinned to core 1. Medians of
the repeats; each trio_ws figure is printed with its ratio to the websockets library's trio server.
"""

from __future__ import annotations

import argparse
import os
import selectors
import shutil
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import cast

from .bench_echo import BASELINE, close, echo_run, frames, handshake, start_server, take_echoes
from .bench_memory import measure as measure_memory

SERVERS = ["trio_ws", "trio-websocket", "websockets-trio", "websockets-asyncio"]


def many_connections(port: int, size: int, connections: int, in_flight: int, seconds: float) -> float:
    """Messages/s over ``connections`` connections, each with ``in_flight`` messages outstanding."""
    frame, expected = frames(size)
    socks = [handshake(port)[0] for _ in range(connections)]
    selector = selectors.DefaultSelector()
    received: dict[socket.socket, bytearray] = {}
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        received[sock] = bytearray()
        sock.sendall(frame * in_flight)
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    outstanding = connections * in_flight
    while outstanding:
        for key, _ in selector.select(1):
            sock = cast(socket.socket, key.fileobj)
            buf = received[sock]
            buf += sock.recv(1 << 20)
            complete = take_echoes(buf, expected)
            if complete:
                done += complete
                outstanding -= complete
                if time.perf_counter() < deadline:
                    sock.setblocking(True)
                    sock.sendall(frame * complete)
                    sock.setblocking(False)
                    outstanding += complete
    elapsed = time.perf_counter() - start
    for sock in socks:
        sock.setblocking(True)
        close(sock)
    return done / elapsed


def latency_p50(port: int, seconds: float, size: int = 16) -> float:
    """Median round trip in µs with one message in flight."""
    frame, expected = frames(size)
    sock, _ = handshake(port)
    samples = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        sock.sendall(frame)
        got = b""
        while len(got) < len(expected):
            got += sock.recv(65536)
        samples.append(time.perf_counter() - t0)
        if got != expected:
            raise RuntimeError("echo mismatch")
    close(sock)
    return statistics.median(samples) * 1e6


def handshakes(port: int, seconds: float, concurrency: int = 10) -> float:
    """Connections/s opened (handshake) and closed (closing handshake), ``concurrency`` at a time."""
    counts = [0] * concurrency
    deadline = time.perf_counter() + seconds

    def worker(i: int) -> None:
        while time.perf_counter() < deadline:
            sock, _ = handshake(port)
            close(sock)
            counts[i] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


def once(name: str, run: Callable[[int], float]) -> float:
    cell.port += 1  # type: ignore[attr-defined]
    port = cell.port  # type: ignore[attr-defined]
    proc = start_server(name, port)
    try:
        return run(port)
    finally:
        proc.kill()
        proc.wait()


def cell(names: list[str], run: Callable[[int], float], repeats: int) -> dict[str, float]:
    """Each server's median over ``repeats``, the servers interleaved and the order reversed every
    other round (a, b, c, c, b, a, a, b, c, ...): a drift of the machine, or a server that gains
    from running after another, weighs on every server alike."""
    values: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else names[::-1]:
            values[name].append(once(name, run))
    return {name: statistics.median(v) for name, v in values.items()}


cell.port = 19500  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servers", nargs="*", default=SERVERS)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-connections", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="1 repeat of 2 s, 500 idle connections")
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="also run trio_ws from the checkout in DIR (e.g. a git worktree of an older commit), "
        "interleaved with this one, and print the ratio of the two",
    )
    args = parser.parse_args()
    if args.baseline:
        os.environ["TRIO_WS_BASELINE"] = os.path.abspath(args.baseline)
        args.servers = [*args.servers, BASELINE]
    if args.quick:
        args.repeats, args.seconds, args.memory_connections = 1, 2.0, 500
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    s = args.seconds
    mib = 1 << 20
    scenarios: list[tuple[str, str, bool, Callable[[int], float]]] = [
        ("echo 16 B, 1 connection, 64 in flight", "msg/s", True, lambda p: echo_run(p, 16, 64, s)[0]),
        ("echo 1 KiB, 1 connection, 64 in flight", "msg/s", True, lambda p: echo_run(p, 1024, 64, s)[0]),
        (
            "echo 1 KiB, 100 connections, 4 in flight each",
            "msg/s",
            True,
            lambda p: many_connections(p, 1024, 100, 4, s),
        ),
        ("echo 64 KiB, 16 in flight", "MB/s", True, lambda p: echo_run(p, 65536, 16, s)[0] * 65536 / 1e6),
        ("echo 1 MiB, 2 in flight", "MB/s", True, lambda p: echo_run(p, mib, 2, s)[0] * mib / 1e6),
        ("round trip p50, 1 in flight", "µs", False, lambda p: latency_p50(p, s)),
        ("handshakes/s (open + close), 10 concurrent", "/s", True, lambda p: handshakes(p, s)),
    ]
    results: dict[tuple[str, str], float] = {}
    for title, unit, _, run in scenarios:
        for name, value in cell(args.servers, run, args.repeats).items():
            results[title, name] = value
            print(f"  {title:48} {name:20} {value:>12,.1f} {unit}", file=sys.stderr)
    memory: dict[str, list[float]] = {name: [] for name in args.servers}
    for _ in range(args.repeats if args.baseline else 1):
        for name in args.servers:
            cell.port += 1  # type: ignore[attr-defined]
            port = cell.port  # type: ignore[attr-defined]
            memory[name].append(measure_memory(name, port, args.memory_connections, False)[0])
            print(f"  memory per idle connection {name:20} {memory[name][-1]:.1f} KiB", file=sys.stderr)
    idle = {name: statistics.median(v) for name, v in memory.items()}

    bases = [b for b in ("websockets-trio", BASELINE) if b in args.servers and "trio_ws" in args.servers]
    print(f"\nMedian of {args.repeats} runs of {s:g} s, servers interleaved; servers on core 0, the load")
    print("generator on core 1.\n")
    print("| scenario | " + " | ".join(args.servers) + "".join(f" | trio_ws ÷ {b}" for b in bases) + " |")
    print("| --- |" + " --- |" * (len(args.servers) + len(bases)))
    for title, unit, higher_is_better, _ in scenarios:
        cells = [f"{results[title, name]:,.0f} {unit}" for name in args.servers]
        for base in bases:
            r = results[title, "trio_ws"] / results[title, base]
            cells.append(f"{r:.2f}" if higher_is_better else f"{r:.2f} (lower is better)")
        print(f"| {title} | " + " | ".join(cells) + " |")
    cells = [f"{idle[name]:.1f} KiB" for name in args.servers]
    cells += [f"{idle['trio_ws'] / idle[base]:.2f} (lower is better)" for base in bases]
    title = f"memory per idle connection ({args.memory_connections:,} connections)"
    print(f"| {title} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
