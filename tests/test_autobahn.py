"""The whole Autobahn TestSuite (1.* to 13.*, permessage-deflate included), run by kosoku against
``serve_websocket`` itself, and by kosoku's fuzzing server against our client.

Strict: every case must be OK or INFORMATIONAL — no NON-STRICT, no UNCLEAN, no FAILED.

Both ends compress every message (``min_size=0``), so the 12.* and 13.* cases exercise the codec
on every echo. (With the default ``min_size``, kosoku 0.x's 12.*.1 cases crash on their own: its
test code hashes an uncompressed text message as ``str``.)
"""

from __future__ import annotations

import collections
import json
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio
from helpers import free_port

from trio_ws import DeflateOptions, WebSocket, WebSocketDisconnect, open_websocket, serve_websocket

ACCEPTABLE = {"OK", "INFORMATIONAL"}


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    while True:
        message = await ws.receive()
        if isinstance(message, str):
            await ws.send_text(message)
        else:
            await ws.send_bytes(message)


def kosoku_command() -> str:
    found = shutil.which("kosoku", path=str(Path(sys.executable).parent)) or shutil.which("kosoku")
    assert found, "kosoku is not installed (pip install -e '.[test]')"
    return found


def verdicts(index_json: Path, agent: str, expected: int) -> None:
    """Assert that the report holds every case for ``agent``, each OK or INFORMATIONAL."""
    cases = json.loads(index_json.read_text())[agent]
    counts = collections.Counter((c["behavior"], c["behaviorClose"]) for c in cases.values())
    bad = {
        case_id: (c["behavior"], c["behaviorClose"])
        for case_id, c in cases.items()
        if c["behavior"] not in ACCEPTABLE or c["behaviorClose"] not in ACCEPTABLE
    }
    print(f"autobahn, {agent}: {len(cases)} cases: {dict(counts)}")
    assert len(cases) >= expected
    assert not bad, bad


async def run_against_server(
    handler: Callable[[WebSocket], Awaitable[None]], tmp_path: Path, selection: list[str]
) -> subprocess.CompletedProcess[bytes]:
    """kosoku against ``serve_websocket(handler)``, the cases of ``selection`` (``-i``/``-x`` args)."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: serve_websocket(
                handler,
                "127.0.0.1",
                0,
                max_message_size=16 * 2**20,  # the 9.* cases send 16 MiB messages
                ping_interval=None,
                compression=DeflateOptions(min_size=0),
                task_status=task_status,
            )
        )
        with trio.fail_after(900):
            result = await trio.run_process(
                [kosoku_command(), f"127.0.0.1:{server.port}", "-p", "4", "-o", str(tmp_path), *selection],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        nursery.cancel_scope.cancel()
    assert (tmp_path / "index.json").exists(), result.stdout.decode()[-2000:]
    return result


@pytest.mark.autobahn
async def test_autobahn_all_cases_against_our_server(tmp_path: Path) -> None:
    result = await run_against_server(echo, tmp_path, [])
    verdicts(tmp_path / "index.json", "trio_ws", 517)
    assert result.returncode == 0


async def streaming_echo(ws: WebSocket) -> None:
    """Each message taken with ``receive_streaming()``, then sent back whole (compressed)."""
    await ws.accept()
    while True:
        chunks = [chunk async for chunk in ws.receive_streaming()]
        text = [chunk for chunk in chunks if isinstance(chunk, str)]
        if len(text) == len(chunks):
            await ws.send_text("".join(text))
        else:
            await ws.send_bytes(b"".join(chunk for chunk in chunks if isinstance(chunk, bytes)))


#: What a streamed receive could get wrong: fragmentation with control frames in between (5.*),
#: UTF-8 split across fragments and invalid UTF-8 failing fast in the middle of a message (6.2-6.4),
#: compressed messages (12.2.1-2). (The whole suite passes too: about a minute more.)
STREAMING_CASES = ["5.*", "6.2.*", "6.3.*", "6.4.*", "12.2.1", "12.2.2"]


@pytest.mark.autobahn
async def test_autobahn_fragment_cases_against_a_streaming_server(tmp_path: Path) -> None:
    selection = [arg for case in STREAMING_CASES for arg in ("-i", case)]
    result = await run_against_server(streaming_echo, tmp_path, selection)
    verdicts(tmp_path / "index.json", "trio_ws", 32)
    assert result.returncode == 0


# kosoku hands every ping the server sends to the case (src/runner.rs, dispatch, Control::Ping: it
# queues the pong, then calls case.onPing), and Autobahn's base Case.onPing records ("ping", ...)
# in `received` and calls finishWhenDone, which, for a case without `expected` (12.*, 13.*), sends
# Close(1000) on the spot: every case still running when a keepalive ping comes FAILs, whatever
# the server does. (Autobahn's own FuzzingProtocol never passes the peer's pings to the case.) This
# run keeps kosoku's pong and drops the callback, so the server's pings go on mid-case. 6.4.3 and
# 6.4.4 are left out: they stream one frame in chops a second apart and kosoku writes its pong
# inside that frame's payload, which corrupts it (the server then closes 1007, rightly).
KOSOKU_IGNORING_PINGS = """
import sys
import kosoku.cases
import case
case.Case.onPing = lambda self, payload: None
from kosoku._cli import main
sys.argv[0] = "kosoku"
main()
"""


@pytest.mark.autobahn
async def test_autobahn_with_keepalive_pings_mid_case(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: serve_websocket(
                echo,
                "127.0.0.1",
                0,
                max_message_size=16 * 2**20,
                ping_interval=0.2,  # shorter than most cases of 9.*, 12.* and 13.*
                ping_timeout=20,
                compression=DeflateOptions(min_size=0),
                task_status=task_status,
            )
        )
        with trio.fail_after(900):  # the whole suite, 1.* to 13.*
            result = await trio.run_process(
                [
                    sys.executable,
                    "-c",
                    KOSOKU_IGNORING_PINGS,
                    f"127.0.0.1:{server.port}",
                    "-x",
                    "6.4.3",
                    "-x",
                    "6.4.4",
                    "-p",
                    "4",
                    "-o",
                    str(tmp_path),
                ],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        nursery.cancel_scope.cancel()
    assert (tmp_path / "index.json").exists(), result.stdout.decode()[-2000:]
    cases = json.loads((tmp_path / "index.json").read_text())["trio_ws"]
    reports = {
        case_id: json.loads((tmp_path / c["reportfile"]).with_suffix(".json").read_text())
        for case_id, c in cases.items()
    }
    pinged = [case_id for case_id, r in reports.items() if r["rxFrameStats"].get("9", 0) > 0]
    assert len(pinged) >= 100, len(pinged)  # the keepalive really did ping mid-case
    verdicts(tmp_path / "index.json", "trio_ws", 515)
    assert result.returncode == 0


# Autobahn's fuzzing server accepts permessage-deflate in 13.2, 13.5 and 13.6 only from a client whose
# offer has client_no_context_takeover; our default offer does not (neither does the websockets
# library's), so those cases run against a client configured with no_context_takeover=True.
NO_TAKEOVER_CASES = ["13.2.*", "13.5.*", "13.6.*"]


@pytest.mark.autobahn
@pytest.mark.parametrize(
    ("selection", "compression", "expected"),
    [
        ([arg for case in NO_TAKEOVER_CASES for arg in ("-x", case)], DeflateOptions(min_size=0), 463),
        (
            [arg for case in NO_TAKEOVER_CASES for arg in ("-i", case)],
            DeflateOptions(min_size=0, no_context_takeover=True),
            54,
        ),
    ],
    ids=["default-offer", "no-context-takeover-offer"],
)
async def test_autobahn_all_cases_against_our_client(
    tmp_path: Path, selection: list[str], compression: DeflateOptions, expected: int
) -> None:
    port = free_port()
    agent = "trio_ws_client"

    async def run_case(case: int, limit: trio.Semaphore) -> None:
        async with limit:
            try:
                async with open_websocket(
                    "127.0.0.1",
                    port,
                    f"/runCase?case={case}&agent={agent}",
                    max_message_size=16 * 2**20,
                    ping_interval=None,
                    compression=compression,
                ) as ws:
                    while True:
                        message = await ws.receive()
                        if isinstance(message, str):
                            await ws.send_text(message)
                        else:
                            await ws.send_bytes(message)
            except WebSocketDisconnect:
                pass

    command = [kosoku_command(), "-m", "fuzzingserver", f"127.0.0.1:{port}", *selection, "-o", str(tmp_path)]
    process = await trio.lowlevel.open_process(command, stderr=subprocess.PIPE)
    try:
        assert process.stderr is not None
        said = b""

        async def wait_for(text: bytes) -> None:
            nonlocal said
            while text not in said:
                assert process.stderr is not None
                chunk = await process.stderr.receive_some()
                if not chunk:
                    return  # it exited: the report tells the rest
                said += chunk

        with trio.fail_after(900):
            await wait_for(b"listening")
            async with open_websocket("127.0.0.1", port, "/getCaseCount") as ws:
                count = int(await ws.receive_text())
            limit = trio.Semaphore(4)
            async with trio.open_nursery() as cases:
                for case in range(1, count + 1):
                    cases.start_soon(run_case, case, limit)
            async with open_websocket("127.0.0.1", port, f"/updateReports?agent={agent}"):
                pass
            await wait_for(b"wrote reports")
    finally:
        process.terminate()
        with trio.CancelScope(shield=True):
            await process.wait()
    assert (tmp_path / "index.json").exists(), said.decode()[-2000:]
    verdicts(tmp_path / "index.json", agent, expected)
