"""What one echoed message costs the server: system calls, task steps, allocations, copies.

    python -m bench.bench_budget                      # this checkout
    python -m bench.bench_budget --baseline DIR       # and the one in DIR, side by side

For each scenario (a size, and how many messages the client sends at once before it waits for
their echoes) the echo server of
``bench/_budget_server.py`` (trio_ws, compression and keepalive off) is driven over one connection
three times:

- **task steps**: a trio ``Instrument`` counts ``before_task_step`` by task; the counts are read
  (``SIGUSR1``) after the handshake and after the messages, and the difference is divided by them;
- **system calls**: the server runs under ``strace -f -c``, once for the handshake and close alone
  and once with the messages too; the difference per message, by call;
- **allocations**: the server runs under ``valgrind --tool=dhat`` with ``PYTHONMALLOC=malloc`` (so
  that every Python object is a ``malloc``), the same two runs: blocks and bytes allocated per
  message. At 64 KiB, the bytes divided by the payload say how many payload-sized buffers a message
  costs: each is a copy of the payload (or a buffer it is read into).

The figures are counts, not times: they do not move with the machine's load.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .bench_echo import ROOT, close, frames, handshake, take_echoes
from .bench_instructions import free_port

SERVER = Path(__file__).resolve().parent / "_budget_server.py"
#: (payload bytes, messages sent at once, messages)
SCENARIOS = [(16, 1, 2000), (16, 64, 20000), (65536, 1, 500), (65536, 16, 2000), (1 << 20, 2, 100)]
DHAT_TOTAL = re.compile(rb"Total:\s+([\d,]+) bytes in ([\d,]+) blocks")


def launch(
    checkout: Path, port: int, *extra: str, wrapper: Sequence[str] = (), env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """The budget server of this script, importing trio_ws from ``checkout``, once it is READY."""
    env = {**os.environ, "PYTHONPATH": str(checkout), **(env or {})}
    command = [*wrapper, sys.executable, str(SERVER), str(port), *extra]
    proc = subprocess.Popen(command, cwd=checkout, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stderr is not None
    line = proc.stdout.readline()
    if line.strip() != b"READY":
        proc.kill()
        raise RuntimeError(f"the server did not start: {line!r} {proc.stderr.read()[-2000:]!r}")
    return proc


def drive(sock: socket.socket, size: int, burst: int, messages: int) -> None:
    """Exactly ``messages`` echoes, in bursts: ``burst`` frames in one write, then their echoes
    (so that every run batches alike, whatever the server's speed)."""
    frame, expected = frames(size)
    done, buf = 0, bytearray()
    while done < messages:
        n = min(burst, messages - done)
        sock.sendall(frame * n)
        got = 0
        while got < n:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("the server closed the connection")
            buf += chunk
            got += take_echoes(buf, expected)
        done += n


def steps(checkout: Path, size: int, in_flight: int, messages: int) -> dict[str, float]:
    port = free_port()
    proc = launch(checkout, port, "--steps")
    try:
        sock, _ = handshake(port)
        drive(sock, size, 1, 1)  # the connection is open and has echoed once

        def read() -> collections.Counter[str]:
            proc.send_signal(signal.SIGUSR1)
            assert proc.stdout is not None
            line = proc.stdout.readline().decode()
            assert line.startswith("STEPS"), line
            return collections.Counter({k: int(v) for k, v in (p.split("=") for p in line.split()[1:])})

        before = read()
        drive(sock, size, in_flight, messages)
        after = read()
        close(sock)
    finally:
        proc.kill()
        proc.wait()
    per = {name: (after[name] - before[name]) / messages for name in after}
    per = {name: n for name, n in per.items() if n >= 0.005}
    per["total"] = sum(per.values())
    return per


def traced(
    checkout: Path, wrapper: list[str], env: dict[str, str], size: int, in_flight: int, messages: int
) -> bytes:
    """The stderr of a server run under ``wrapper`` (strace, valgrind) for one connection."""
    port = free_port()
    proc = launch(checkout, port, "--once", wrapper=wrapper, env=env)
    try:
        sock, _ = handshake(port)
        if messages:
            drive(sock, size, in_flight, messages)
        close(sock)
        err: bytes = proc.communicate(timeout=600)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return err


def syscalls(checkout: Path, size: int, in_flight: int, messages: int) -> dict[str, float]:
    counts = []
    for n in (0, messages):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "strace"
            traced(checkout, ["strace", "-f", "-c", "-o", str(out)], {}, size, in_flight, n)
            calls: dict[str, int] = {}
            for line in out.read_text().splitlines():
                fields = line.split()
                if len(fields) >= 5 and fields[0][0].isdigit() and not line.lstrip().startswith("100.00"):
                    calls[fields[-1]] = int(fields[3])
            counts.append(calls)
    idle, driven = counts
    per = {name: (driven.get(name, 0) - idle.get(name, 0)) / messages for name in driven}
    per = {name: n for name, n in sorted(per.items(), key=lambda kv: -kv[1]) if n >= 0.005}
    per["total"] = sum(per.values())
    return per


def allocations(checkout: Path, size: int, in_flight: int, messages: int) -> tuple[float, float]:
    """(blocks, bytes) allocated per message."""
    totals = []
    for n in (0, messages):
        wrapper = ["valgrind", "--tool=dhat", "--dhat-out-file=/dev/null"]
        err = traced(checkout, wrapper, {"PYTHONMALLOC": "malloc"}, size, in_flight, n)
        match = DHAT_TOTAL.search(err)
        assert match is not None, err[-2000:]
        totals.append((int(match[2].replace(b",", b"")), int(match[1].replace(b",", b""))))
    (b0, n0), (b1, n1) = totals
    return (b1 - b0) / messages, (n1 - n0) / messages


def listing(per: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in per.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--baseline", metavar="DIR", help="also measure the checkout in DIR")
    parser.add_argument("--only", choices=["steps", "syscalls", "allocations"], nargs="*")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the message counts")
    args = parser.parse_args()
    checkouts = {"this": ROOT}
    if args.baseline:
        checkouts["baseline"] = Path(args.baseline).resolve()
    kinds = args.only or ["steps", "syscalls", "allocations"]
    if "syscalls" in kinds and shutil.which("strace") is None:
        sys.exit("system calls need strace (Debian: apt install strace)")
    if "allocations" in kinds and shutil.which("valgrind") is None:
        sys.exit("allocations need valgrind (Debian: apt install valgrind)")
    for size, in_flight, messages in SCENARIOS:
        messages = max(1, int(messages * args.scale))
        title = f"echo {size:,} B, {in_flight} at a time ({messages:,} messages)"
        for label, checkout in checkouts.items():
            print(f"## {title}: {label} ({checkout})", flush=True)
            if "steps" in kinds:
                per = steps(checkout, size, in_flight, messages)
                print("  task steps per message: " + listing(per), flush=True)
            if "syscalls" in kinds:
                per = syscalls(checkout, size, in_flight, messages)
                print("  system calls per message: " + listing(per), flush=True)
            if "allocations" in kinds:
                alloc_messages = max(1, messages // 10)  # dhat is slow
                blocks, nbytes = allocations(checkout, size, in_flight, alloc_messages)
                print(
                    f"  allocations per message: {blocks:.1f} blocks, {nbytes:,.0f} bytes"
                    f" ({nbytes / size:.2f} times the payload; {alloc_messages} messages)",
                    flush=True,
                )


if __name__ == "__main__":
    main()
