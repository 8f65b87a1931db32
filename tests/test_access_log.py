"""The access log: one line per connection on ``trio_ws.access``, without the query string unless
asked (tokens travel there), its fields also on the log record for structured formatters."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
import trio

from trio_ws import WebSocket, open_websocket, open_websocket_server

FIELDS = (
    "client",
    "path",
    "status",
    "close_code",
    "duration",
    "messages_received",
    "bytes_received",
    "messages_sent",
    "bytes_sent",
)


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    async for text in ws.iter_text():
        await ws.send_text(text)


async def plain_http(port: int, target: str) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some():
                data += chunk
    return data


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "trio_ws.access"]


def fields(record: logging.LogRecord) -> dict[str, Any]:
    return {name: vars(record)[name] for name in FIELDS}


async def traffic(port: int) -> None:
    """One accepted connection with a token in its query (one message each way), one plain HTTP
    request with a token (426)."""
    async with open_websocket("127.0.0.1", port, "/chat?token=s3cret&room=a") as ws:
        await ws.send_text("hi")
        assert await ws.receive_text() == "hi"
    assert (await plain_http(port, "/page?token=s3cret")).startswith(b"HTTP/1.1 426 ")


async def test_the_access_log_leaves_the_query_out_and_carries_its_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trio_ws.access")
    async with open_websocket_server(echo, "127.0.0.1", 0) as server:
        await traffic(server.port)
    accepted, refused = access_records(caplog)
    assert "s3cret" not in caplog.text
    assert re.fullmatch(
        r"127\.0\.0\.1:\d+ /chat 101 close=1000 [\d.]+s in=1/2B out=1/2B", accepted.getMessage()
    )
    assert re.fullmatch(r"127\.0\.0\.1:\d+ /page 426 [\d.]+s", refused.getMessage())
    got = fields(accepted)
    assert re.fullmatch(r"127\.0\.0\.1:\d+", got.pop("client"))
    assert isinstance(got.pop("duration"), float)
    assert got == {
        "path": "/chat",
        "status": 101,
        "close_code": 1000,
        "messages_received": 1,
        "bytes_received": 2,
        "messages_sent": 1,
        "bytes_sent": 2,
    }
    assert (vars(refused)["path"], vars(refused)["status"], vars(refused)["close_code"]) == (
        "/page",
        426,
        None,
    )
    assert vars(refused)["messages_received"] == 0
    assert not hasattr(accepted, "query")
    json.dumps(fields(accepted))  # what a JSON formatter does with them


async def test_access_log_query_keeps_the_query_string(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="trio_ws.access")
    async with open_websocket_server(echo, "127.0.0.1", 0, access_log_query=True) as server:
        await traffic(server.port)
    accepted, refused = access_records(caplog)
    assert " /chat?token=s3cret&room=a 101 close=1000 " in accepted.getMessage()
    assert vars(accepted)["query"] == "token=s3cret&room=a"
    assert vars(accepted)["path"] == "/chat"
    assert " /page?token=s3cret 426 " in refused.getMessage()
    assert vars(refused)["query"] == "token=s3cret"


async def test_a_connection_dropped_without_an_answer_is_logged_without_a_status(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from trio_ws import ConnectionSummary
    from trio_ws.server._access import AccessRecord

    caplog.set_level(logging.INFO, logger="trio_ws.access")
    record = AccessRecord(trio.current_time(), ("192.0.2.7", 5000))  # (e.g. open_timeout ran out)
    summary = record.summary()
    assert summary == ConnectionSummary("192.0.2.7:5000", None, None, None, None, summary.duration)
    record.finish(None, include_query=False)
    (logged,) = access_records(caplog)
    assert re.fullmatch(r"192\.0\.2\.7:5000 - - [\d.]+s", logged.getMessage())
    assert (vars(logged)["path"], vars(logged)["status"], vars(logged)["close_code"]) == (None, None, None)
