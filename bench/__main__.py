"""The performance budget in one run: ``python -m bench`` (``--quick`` for one repeat of 2 s).

Every cell runs each server in its own process pinned to core 0; the load generator (this process,
raw sockets with pre-built masked frames, checking every echoed byte) is pinned to core 1. Medians of
the repeats, the servers interleaved. Each trio_ws figure is printed with its ratio to the websockets
library on trio and on asyncio and to picows, with the target it is held to and whether the run met
it; the last column is the machine's noise: the widest spread of one server's repeats in that row.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from collections.abc import Callable
from typing import NamedTuple

from .bench_echo import BASELINE, echo_run
from .bench_memory import SHORT
from .bench_memory import measure as measure_memory
from .scenarios import handshakes, latency_p50, many_connections, runs

SERVERS = ["trio_ws", "trio-websocket", "websockets-trio", "websockets-asyncio", "picows"]
ASYNCIO = "websockets-asyncio"


class Scenario(NamedTuple):
    title: str
    unit: str
    higher_is_better: bool
    run: Callable[[int], float]
    #: (ratio to websockets on asyncio, ratio to picows): the least each may be (the most, for a
    #: figure where lower is better); ``None``: no target.
    targets: tuple[float | None, float | None]


def scenarios(s: float) -> list[Scenario]:
    mib = 1 << 20
    return [
        Scenario("echo 16 B, 1 connection, 64 in flight", "msg/s", True,
                 lambda p: echo_run(p, 16, 64, s)[0], (1.5, 0.5)),
        Scenario("echo 1 KiB, 1 connection, 64 in flight", "msg/s", True,
                 lambda p: echo_run(p, 1024, 64, s)[0], (1.5, 0.5)),
        Scenario("echo 64 KiB, 1 connection, 16 in flight", "MB/s", True,
                 lambda p: echo_run(p, 65536, 16, s)[0] * 65536 / 1e6, (1.0, None)),
        Scenario("echo 1 MiB, 1 connection, 2 in flight", "MB/s", True,
                 lambda p: echo_run(p, mib, 2, s)[0] * mib / 1e6, (1.0, None)),
        Scenario("echo 1 KiB, 100 connections, 1 in flight each", "msg/s", True,
                 lambda p: many_connections(p, 1024, 100, 1, s), (1.0, None)),
        Scenario("echo 1 KiB, 100 connections, 64 in flight each", "msg/s", True,
                 lambda p: many_connections(p, 1024, 100, 64, s), (1.0, None)),
        Scenario("round trip p50, 16 B, 1 in flight", "µs", False, lambda p: latency_p50(p, s), (1.2, None)),
        Scenario("handshakes/s (open + close), 10 concurrent", "/s", True,
                 lambda p: handshakes(p, s), (1.0, None)),
    ]  # fmt: skip


def verdict(value: float, base: float, target: float | None, higher_is_better: bool) -> str:
    ratio = value / base
    if target is None:
        return f"{ratio:.2f}"
    met = ratio >= target if higher_is_better else ratio <= target
    return f"{ratio:.2f} ({'≥' if higher_is_better else '≤'} {target:g}: {'met' if met else 'NOT met'})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servers", nargs="*", default=SERVERS)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-connections", type=int, default=2000)
    parser.add_argument("--only", nargs="*", type=int, help="run only these scenarios (1 = the first)")
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
    chosen = [sc for i, sc in enumerate(scenarios(args.seconds), 1) if not args.only or i in args.only]
    load = os.getloadavg()[0]
    results: dict[tuple[str, str], float] = {}
    noise: dict[str, float] = {}
    for sc in chosen:
        for name, values in runs(args.servers, sc.run, args.repeats).items():
            results[sc.title, name] = median = statistics.median(values)
            spread = (max(values) - min(values)) / median
            noise[sc.title] = max(noise.get(sc.title, 0.0), spread)
            print(f"  {sc.title:48} {name:20} {median:>12,.1f} {sc.unit}", file=sys.stderr)
    memory: dict[tuple[str, bool], list[float]] = {}
    for compress in (False, True):
        for _ in range(args.repeats if args.baseline else 1):
            for name in args.servers:
                if compress and name in ("trio-websocket", "picows"):
                    continue  # no permessage-deflate
                runs.port += 1  # type: ignore[attr-defined]
                port = runs.port  # type: ignore[attr-defined]
                kib = measure_memory(name, port, args.memory_connections, compress, SHORT)[1]
                memory.setdefault((name, compress), []).append(kib)
                print(f"  memory per idle connection {name:20} {compress=} {kib:.1f} KiB", file=sys.stderr)
    print(
        f"\nMedian of {args.repeats} runs of {args.seconds:g} s, servers interleaved; servers on core 0, the"
    )
    print(f"load generator on core 1; load average {load:.2f} at the start.\n")
    report(args.servers, chosen, results, noise, memory, args.memory_connections)


def report(
    servers: list[str],
    chosen: list[Scenario],
    results: dict[tuple[str, str], float],
    noise: dict[str, float],
    memory: dict[tuple[str, bool], list[float]],
    connections: int,
) -> None:
    mine = "trio_ws" in servers
    bases = [b for b in ("websockets-trio", ASYNCIO, "picows", BASELINE) if b in servers and mine]
    print("| scenario | " + " | ".join(servers) + "".join(f" | trio_ws ÷ {b}" for b in bases) + " | noise |")
    print("| --- |" + " --- |" * (len(servers) + len(bases) + 1))
    for sc in chosen:
        cells = [f"{results[sc.title, name]:,.0f} {sc.unit}" for name in servers]
        for base in bases:
            target = {ASYNCIO: sc.targets[0], "picows": sc.targets[1]}.get(base)
            cells.append(
                verdict(results[sc.title, "trio_ws"], results[sc.title, base], target, sc.higher_is_better)
            )
        print(f"| {sc.title} | " + " | ".join(cells) + f" | ±{noise[sc.title] / 2:.0%} |")
    for compress, limit in ((False, 12.0), (True, 16.0)):
        kib = {
            name: statistics.median(memory[name, compress]) for name in servers if (name, compress) in memory
        }
        cells = [f"{kib[name]:.1f} KiB" if name in kib else "-" for name in servers]
        cells += [f"{kib['trio_ws'] / kib[b]:.2f}" if b in kib and mine else "-" for b in bases]
        if mine:
            cells[0] += f" (≤ {limit:g}: {'met' if kib['trio_ws'] <= limit else 'NOT met'})"
        what = "compression negotiated, unused" if compress else "compression off"
        print(
            f"| memory per idle connection ({connections:,} connections, {what}) | "
            + " | ".join(cells)
            + " | |"
        )


if __name__ == "__main__":
    main()
