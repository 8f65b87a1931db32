"""Autobahn 12.5.10 (1,000 compressed 128 KiB echoes) against trio_ws's serve_websocket with
keepalive pings on: kosoku vs the `websockets` client.

A standalone script, not a pytest test (its name does not match ``test_*.py``). Run from the project root:

    .venv/bin/python tests/autobahn_keepalive_repro.py \
        [--case 12.5.10] [--ping-interval 0.2] [--ping-timeout 20] [--only kosoku|patched|websockets]

Three runs against one server (echo handler, DeflateOptions(min_size=0), max_message_size 16 MiB,
the server's own keepalive: ping_interval / ping_timeout):
  kosoku      the stock kosoku CLI, `-i CASE`            -> FAILED: it closes 1000 itself on the first ping
  patched     kosoku in-process, Case.onPing made a no-op (kosoku's Rust driver still answers
              every ping with a pong)                       -> OK, with the server's pings mid-case
  websockets  websockets' asyncio client, compression on, the same 1,000 echoes -> all 1,000
For each it prints the server's view, read through trio_ws's public API only (messages echoed,
``ws.messages_received`` / ``ws.messages_sent``, ``ws.close_code``, and the keepalive pongs: each
answered ping updates ``ws.latency``, which a task in ``ws.nursery`` watches), plus the `trio_ws`
log records (the access line; "keepalive ping timed out" if that happens); for kosoku, also its exit
status, the case's verdict, the `received` list and the frame counters from its JSON report (its
rxFrameStats["9"] is the pings it got from the server). kosoku's reports go under a fresh
tempfile.mkdtemp() directory, printed at the start.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import TypedDict

import kosoku
import trio
import websockets.asyncio.client as wsc

import trio_ws
from trio_ws import DeflateOptions, WebSocket, WebSocketDisconnect, WebSocketServer, serve_websocket

VENV_BIN = Path(sys.executable).parent
KOSOKU_PKG = Path(kosoku.__file__).parent
PDF = KOSOKU_PKG / "shim/autobahntestsuite/testdata/10.1.1.105.5439.pdf"  # the 12.5.* test data
LATENCY_POLL = 0.005  # seconds; keepalive pings are sequential, at least ping_interval apart

PATCHED_KOSOKU = r"""
import sys
import kosoku.cases  # builds the case index; the Autobahn base class is module `case`
import case
# kosoku's runner (src/runner.rs, dispatch, Control::Ping) already queues the pong, then calls
# case.onPing; the base Case.onPing records ("ping", ...) in `received` and calls finishWhenDone,
# which, for a case with no `expected` (12.*/13.*), sends Close(1000) at once. Autobahn's own
# FuzzingProtocol never hands peer pings to the case. Keep the pong, drop the callback.
case.Case.onPing = lambda self, payload: None
from kosoku._cli import main
sys.argv[0] = "kosoku"
main()
"""


class Pongs:
    """The keepalive pongs of one connection, seen from outside: ``ws.latency`` is the round trip
    of the last ping answered, so each answered ping gives it a new value (a new float object)."""

    def __init__(self) -> None:
        self.count = 0
        self.max_rtt_ms = 0.0
        self._last: float | None = None

    def check(self, ws: WebSocket) -> None:
        latency = ws.latency
        if latency is not None and latency is not self._last:  # identity: a new pong, even if equal
            self._last = latency
            self.count += 1
            self.max_rtt_ms = max(self.max_rtt_ms, round(latency * 1000, 1))

    async def watch(self, ws: WebSocket) -> None:
        """Run in ``ws.nursery``: ends with the connection."""
        while True:
            self.check(ws)
            await trio.sleep(LATENCY_POLL)


class HandlerRecord(TypedDict):
    echoed: int
    received: int
    sent: int
    close_code: int | None
    pongs: int
    max_rtt_ms: float
    secs: float
    end: str


handlers: list[HandlerRecord] = []


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    pongs = Pongs()
    ws.nursery.start_soon(pongs.watch, ws)
    n, t0, end = 0, trio.current_time(), "returned"
    try:
        while True:
            m = await ws.receive()
            n += 1
            await (ws.send_text(m) if isinstance(m, str) else ws.send_bytes(m))
    except WebSocketDisconnect as e:
        end = f"WebSocketDisconnect({e.code})"
        raise
    except BaseException as e:
        end = repr(e)[:80]
        raise
    finally:
        pongs.check(ws)
        handlers.append(
            {
                "echoed": n,
                "received": ws.messages_received,
                "sent": ws.messages_sent,
                "close_code": ws.close_code,
                "pongs": pongs.count,
                "max_rtt_ms": pongs.max_rtt_ms,
                "secs": round(trio.current_time() - t0, 2),
                "end": end,
            }
        )


def websockets_client(port: int, size: int = 131072, count: int = 1000) -> str:
    data = PDF.read_bytes()

    async def run() -> str:
        ptr, got = 0, 0
        async with wsc.connect(
            f"ws://127.0.0.1:{port}/", compression="deflate", max_size=None, ping_interval=None
        ) as ws:
            ext = ws.response.headers.get("Sec-WebSocket-Extensions") if ws.response else None
            for _ in range(count):
                end = (ptr + size) % len(data)
                msg = data[ptr:end] if end > ptr else data[ptr:] + data[:end]
                ptr = end
                await ws.send(msg)
                back = await ws.recv(decode=False)
                if hashlib.sha1(back).digest() != hashlib.sha1(msg).digest():
                    return f"echo {got} differs"
                got += 1
        return f"{got}/{count} echoes OK (extensions: {ext})"

    return asyncio.run(run())


def report(outdir: Path, case_id: str) -> None:
    index = outdir / "index.json"
    if not index.exists():
        print("   no kosoku report")
        return
    for agent, cases in json.loads(index.read_text()).items():
        c = cases[case_id]
        detail = json.loads((outdir / f"{agent}_case_{case_id.replace('.', '_')}.json").read_text())
        print(
            f"   kosoku verdict: behavior={c['behavior']} behaviorClose={c['behaviorClose']} "
            f"duration={c['duration']} ms remoteCloseCode={c['remoteCloseCode']}"
        )
        print(f"   result: {detail['result']!r}")
        print(
            f"   received: {detail['received']!r}  closedByMe={detail['closedByMe']} "
            f"localCloseCode={detail['localCloseCode']}"
        )
        print(
            f"   rxFrameStats={detail['rxFrameStats']}  txFrameStats={detail['txFrameStats']} "
            "(opcodes: 2 binary, 8 close, 9 ping, 10 pong)"
        )


async def run_kosoku(run: str, port: int, case_id: str, out: Path) -> None:
    head = [str(VENV_BIN / "kosoku")] if run == "kosoku" else [sys.executable, "-c", PATCHED_KOSOKU]
    result = None
    with trio.move_on_after(600):
        result = await trio.run_process(
            [*head, f"127.0.0.1:{port}", "-i", case_id, "-o", str(out)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    if result is None:
        print("   kosoku: timed out after 600 s")
    else:
        last = (result.stdout + result.stderr).decode(errors="replace").strip().splitlines()[-1:]
        print(f"   kosoku: exit status {result.returncode}; {last[0] if last else '(no output)'}")
    report(out, case_id)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", default="12.5.10")
    ap.add_argument("--ping-interval", type=float, default=0.2)
    ap.add_argument("--ping-timeout", type=float, default=20.0)
    ap.add_argument("--only", choices=["kosoku", "patched", "websockets"], action="append")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="   log: %(name)s %(levelname)s %(message)s")
    # The access lines, and "keepalive ping timed out" if it happens.
    logging.getLogger("trio_ws").setLevel(logging.INFO)
    runs: list[str] = args.only or ["kosoku", "patched", "websockets"]
    outroot = Path(tempfile.mkdtemp(prefix="autobahn-keepalive-"))
    print(f"trio_ws from {trio_ws.__file__}; ping_interval={args.ping_interval}", end="")
    print(f" ping_timeout={args.ping_timeout}")
    print(f"kosoku reports under {outroot}")
    async with trio.open_nursery() as nursery:
        server: WebSocketServer = await nursery.start(
            functools.partial(
                serve_websocket,
                echo,
                "127.0.0.1",
                0,
                max_message_size=16 * 2**20,
                ping_interval=args.ping_interval,
                ping_timeout=args.ping_timeout,
                compression=DeflateOptions(min_size=0),
            )
        )
        for run in runs:
            handlers.clear()
            t = time.monotonic()
            print(f"\n== {run} ({args.case if run != 'websockets' else '1000 x 128 KiB of the 12.5 PDF'})")
            if run == "websockets":
                print("  ", await trio.to_thread.run_sync(websockets_client, server.port))
            else:
                out = outroot / run
                out.mkdir()
                await run_kosoku(run, server.port, args.case, out)
            await trio.sleep(0.3)  # let the handler finish
            print(f"   server: {handlers}  wall={time.monotonic() - t:.1f}s")
            print("   (pongs = keepalive pings answered, counted from ws.latency updates)")
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
