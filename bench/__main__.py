"""The performance budget in one run: ``python -m bench`` (``--quick`` for one repeat of 2 s).

Every cell runs each server in its own process pinned to core 0; the load generator (this process,
raw sockets with pre-built masked frames, checking every echoed byte) is pinned to core 1. Medians of
the repeats; each trio_ws figure is printed with its ratio to the websockets library's trio server.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from collections.abc import Callable

from .bench_echo import BASELINE, echo_run
from .bench_memory import measure as measure_memory
from .scenarios import cell, handshakes, latency_p50, many_connections

SERVERS = ["trio_ws", "trio-websocket", "websockets-trio", "websockets-asyncio"]


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
