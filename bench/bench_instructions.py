"""Instructions the server executes per message, counted by valgrind: a figure that does not move
with the machine's load, for comparing two builds of trio_ws to a few percent.

    python -m bench.bench_instructions --baseline DIR     # this checkout and the one in DIR
    python -m bench.bench_instructions --servers picows websockets-asyncio --only 1 2

Each scenario runs each server twice under ``valgrind --tool=cachegrind`` (slow, but it counts every
instruction): once with no traffic, once with the load generator driving it for ``--seconds``. The
difference, divided by the messages (or handshakes) the generator counted, is the cost of one. A
server under valgrind runs about 50 times slower, so pipelined scenarios batch more messages per read
than at full speed: the figures compare builds, they are not a profile of production.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .bench_echo import BASELINE, ROOT, close, frames, handshake, take_echoes

SUMMARY = re.compile(rb"^summary: (\d+)", re.MULTILINE)


def start(name: str, port: int, out: Path) -> subprocess.Popen[bytes]:
    """The echo server ``name`` of ``bench/servers.py`` (or the baseline's trio_ws) under cachegrind."""
    cwd, env = ROOT, dict(os.environ)
    if name == BASELINE:
        cwd = Path(os.environ["TRIO_WS_BASELINE"])
        env["PYTHONPATH"] = str(cwd)
        name = "trio_ws"
    command = [
        "valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}",
        sys.executable, "-m", "bench.servers", name, str(port),
    ]  # fmt: skip
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"READY":
        proc.kill()
        raise RuntimeError(f"{name} did not start under valgrind")
    return proc


def instructions(name: str, port: int, work: Callable[[int], int] | None) -> tuple[int, int]:
    """(instructions, units of work done) of one server process, from start to exit."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cachegrind.out"
        proc = start(name, port, out)
        try:
            done = work(port) if work is not None else 0
        finally:
            proc.send_signal(signal.SIGINT if name in ("trio_ws", BASELINE) else signal.SIGTERM)
            proc.wait(timeout=120)
        match = SUMMARY.search(out.read_bytes())
        assert match is not None, "no summary in cachegrind's output"
        return int(match[1]), done


def pipelined(size: int, in_flight: int, seconds: float) -> Callable[[int], int]:
    def work(port: int) -> int:
        frame, expected = frames(size)
        sock = handshake(port)[0]
        sock.sendall(frame * in_flight)
        buf, done, deadline = bytearray(), 0, time.monotonic() + seconds
        outstanding = in_flight
        while outstanding:
            buf += sock.recv(1 << 20)
            if n := take_echoes(buf, expected):
                done, outstanding = done + n, outstanding - n
                if time.monotonic() < deadline:
                    sock.sendall(frame * n)
                    outstanding += n
        close(sock)
        return done

    return work


def many(connections: int, in_flight: int, seconds: float) -> Callable[[int], int]:
    def work(port: int) -> int:
        frame, expected = frames(1024)
        done = [0] * connections

        def one(i: int) -> None:
            sock = handshake(port)[0]
            buf, outstanding, deadline = bytearray(), in_flight, time.monotonic() + seconds
            sock.sendall(frame * in_flight)
            while outstanding:
                buf += sock.recv(1 << 16)
                if n := take_echoes(buf, expected):
                    done[i] += n
                    outstanding -= n
                    if time.monotonic() < deadline:
                        sock.sendall(frame * n)
                        outstanding += n
            close(sock)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(connections)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(done)

    return work


def handshakes(seconds: float) -> Callable[[int], int]:
    def work(port: int) -> int:
        done, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            close(handshake(port)[0])
            done += 1
        return done

    return work


SCENARIOS: list[tuple[str, Callable[[float], Callable[[int], int]]]] = [
    ("echo 16 B, 1 connection, 64 in flight", lambda s: pipelined(16, 64, s)),
    ("echo 1 KiB, 1 connection, 64 in flight", lambda s: pipelined(1024, 64, s)),
    ("echo 1 KiB, 100 connections, 4 in flight each", lambda s: many(100, 4, s)),
    ("echo 64 KiB, 16 in flight", lambda s: pipelined(65536, 16, s)),
    ("echo 1 MiB, 2 in flight", lambda s: pipelined(1 << 20, 2, s)),
    ("round trip, 1 in flight", lambda s: pipelined(16, 1, s)),
    ("handshake (open + close)", handshakes),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--baseline", metavar="DIR", help="the other checkout")
    parser.add_argument(
        "--servers", nargs="*", default=[], help="other servers of bench/servers.py to count (picows, ...)"
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="of traffic per run (default 8)")
    parser.add_argument("--only", nargs="*", type=int, help="run only these scenarios (1 = the first)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("bench_instructions needs valgrind (Debian: apt install valgrind)")
    names = ["trio_ws", *args.servers]
    if args.baseline:
        os.environ["TRIO_WS_BASELINE"] = os.path.abspath(args.baseline)
        names.append(BASELINE)
    if len(names) < 2:
        parser.error("give --baseline DIR or --servers NAME ...")
    idle = {name: instructions(name, free_port(), None)[0] for name in names}
    print("| scenario | " + " | ".join(names) + "".join(f" | trio_ws ÷ {n}" for n in names[1:]) + " |")
    print("| --- |" + " --- |" * (2 * len(names) - 1))
    for i, (title, make) in enumerate(SCENARIOS, 1):
        if args.only and i not in args.only:
            continue
        per: dict[str, float] = {}
        for name in names:
            total, done = instructions(name, free_port(), make(args.seconds))
            per[name] = (total - idle[name]) / max(done, 1)
            line = f"  {title:48} {name:18} {per[name]:>12,.0f} instructions each ({done} done)"
            print(line, file=sys.stderr)
        cells = [f"{per[n]:,.0f}" for n in names] + [f"{per['trio_ws'] / per[n]:.3f}" for n in names[1:]]
        print(f"| {title} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
