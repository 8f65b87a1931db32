"""The whole Autobahn TestSuite (1.* to 13.*, permessage-deflate included), run by kosoku against a
raw ASGI echo application on ``serve_asgi``: strict, as for ``serve_websocket`` itself (every case
OK or INFORMATIONAL)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from test_autobahn import kosoku_command, verdicts

from trio_ws import DeflateOptions
from trio_ws.asgi import Receive, Scope, Send, serve_asgi


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "websocket":
        return  # (no lifespan to speak of)
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


@pytest.mark.autobahn
async def test_autobahn_all_cases_against_an_asgi_echo_app(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: serve_asgi(
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
                [kosoku_command(), f"127.0.0.1:{server.port}", "-p", "4", "-o", str(tmp_path)],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        nursery.cancel_scope.cancel()
    assert (tmp_path / "index.json").exists(), result.stdout.decode()[-2000:]
    verdicts(tmp_path / "index.json", "trio_ws", 517)
    assert result.returncode == 0
