"""The load of the benchmarks' scenarios, from raw sockets with pre-built masked frames (every
echoed byte checked), and the interleaved runs of several servers that make one cell of a table."""

from __future__ import annotations

import selectors
import socket
import statistics
import threading
import time
from collections.abc import Callable
from typing import cast

from .bench_echo import close, frames, handshake, start_server, take_echoes


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
    """``run(port)`` against a fresh server ``name`` of ``bench/servers.py``."""
    runs.port += 1  # type: ignore[attr-defined]
    port = runs.port  # type: ignore[attr-defined]
    proc = start_server(name, port)
    try:
        return run(port)
    finally:
        proc.kill()
        proc.wait()


def runs(names: list[str], run: Callable[[int], float], repeats: int) -> dict[str, list[float]]:
    """Each server's ``repeats`` results, the servers interleaved and the order reversed every
    other round (a, b, c, c, b, a, a, b, c, ...): a drift of the machine, or a server that gains
    from running after another, weighs on every server alike."""
    values: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else names[::-1]:
            values[name].append(once(name, run))
    return values


def cell(names: list[str], run: Callable[[int], float], repeats: int) -> dict[str, float]:
    """Each server's median of :func:`runs`."""
    return {name: statistics.median(v) for name, v in runs(names, run, repeats).items()}


runs.port = 19500  # type: ignore[attr-defined]
