"""The whole Autobahn TestSuite (1.* to 13.*, permessage-deflate included), run by kosoku against
``serve_websocket`` itself.

Strict: every case must be OK or INFORMATIONAL — no NON-STRICT, no UNCLEAN, no FAILED.

The server compresses every message (``min_size=0``), so the 12.* and 13.* cases exercise the codec
on every echo. (With the default ``min_size``, kosoku 0.x's 12.*.1 cases crash on their own: its
test code hashes an uncompressed text message as ``str``.)
"""

from __future__ import annotations

import collections
import json
import shutil
import sys
from pathlib import Path

import pytest
import trio

from trio_ws import DeflateOptions, WebSocket, serve_websocket

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


@pytest.mark.autobahn
async def test_autobahn_all_cases(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: serve_websocket(
                echo,
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
                [
                    kosoku_command(),
                    f"127.0.0.1:{server.port}",
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
    index = json.loads((tmp_path / "index.json").read_text())
    cases = index["trio_ws"]
    verdicts = collections.Counter((c["behavior"], c["behaviorClose"]) for c in cases.values())
    bad = {
        case_id: (c["behavior"], c["behaviorClose"])
        for case_id, c in cases.items()
        if c["behavior"] not in ACCEPTABLE or c["behaviorClose"] not in ACCEPTABLE
    }
    print(f"autobahn: {len(cases)} cases: {dict(verdicts)}")
    assert len(cases) >= 517, result.stdout.decode()[-2000:]
    assert not bad, bad
    assert result.returncode == 0
