"""ASGI servers side by side: ``python -m bench.bench_asgi`` (``--quick`` for one repeat of 2 s).

One Starlette WebSocket echo application (``starlette_echo`` in ``bench/servers.py``) on trio_ws's
``serve_asgi``, on hypercorn's trio worker and on uvicorn (asyncio, its default WebSocket
implementation; uvloop and httptools are not installed). Each server runs in its own process pinned to core
0, the load generator (raw sockets, pre-built masked frames, every echoed byte checked) on core 1;
servers interleaved, medians of the repeats, ratios of trio_ws to each of the others.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable

from .bench_echo import echo_run
from .scenarios import cell, handshakes, latency_p50, many_connections
from .servers import ASGI_NAMES

OURS = "starlette-trio_ws"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servers", nargs="*", default=ASGI_NAMES)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 repeat of 2 s")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.seconds = 1, 2.0
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    s = args.seconds
    scenarios: list[tuple[str, str, bool, Callable[[int], float]]] = [
        ("echo 16 B, 1 connection, 64 in flight", "msg/s", True, lambda p: echo_run(p, 16, 64, s)[0]),
        ("echo 1 KiB, 1 connection, 64 in flight", "msg/s", True, lambda p: echo_run(p, 1024, 64, s)[0]),
        (
            "echo 1 KiB, 100 connections, 1 in flight each",
            "msg/s",
            True,
            lambda p: many_connections(p, 1024, 100, 1, s),
        ),
        ("round trip p50, 1 in flight", "µs", False, lambda p: latency_p50(p, s)),
        ("handshakes/s (open + close), 10 concurrent", "/s", True, lambda p: handshakes(p, s)),
    ]
    results: dict[tuple[str, str], float] = {}
    for title, unit, _, run in scenarios:
        for name, value in cell(args.servers, run, args.repeats).items():
            results[title, name] = value
            print(f"  {title:48} {name:16} {value:>12,.1f} {unit}", file=sys.stderr)

    bases = [b for b in args.servers if b != OURS] if OURS in args.servers else []
    print(f"\nA Starlette echo app; median of {args.repeats} runs of {s:g} s, servers interleaved;")
    print("servers on core 0, the load generator on core 1.\n")
    print("| scenario | " + " | ".join(args.servers) + "".join(f" | trio_ws ÷ {b}" for b in bases) + " |")
    print("| --- |" + " --- |" * (len(args.servers) + len(bases)))
    for title, unit, higher_is_better, _ in scenarios:
        cells = [f"{results[title, name]:,.0f} {unit}" for name in args.servers]
        for base in bases:
            r = results[title, OURS] / results[title, base]
            cells.append(f"{r:.2f}" if higher_is_better else f"{r:.2f} (lower is better)")
        print(f"| {title} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
