"""How a handler ends a connection with a code of its own: ``WebSocketClose`` refuses what a close
frame may not carry when it is made, whatever reaches the server's handler-exit path still closes
with a close frame (1011 at worst, never a dropped connection), and ``WebSocketClose`` raised in the
handler's own tasks (an ``ExceptionGroup``) closes as a bare one does."""

from __future__ import annotations

import logging
import sys

import pytest
import trio

from trio_ws import (
    CloseCode,
    HandshakeRejected,
    WebSocket,
    WebSocketClose,
    WebSocketDisconnect,
    open_websocket,
    open_websocket_server,
)
from trio_ws.testing import open_test_client

if sys.version_info < (3, 11):  # pragma: no cover - trio depends on the backport there
    from exceptiongroup import ExceptionGroup

LONG_REASON = "é" * 62  # 124 bytes of UTF-8: one too many
LONGEST_REASON = "é" * 61 + "a"  # 123 bytes


@pytest.mark.parametrize("code", [1005, 1006, 999, 5000, 1015, 1004, 0, 2999, 1016, -1])
def test_websocket_close_refuses_a_code_that_cannot_be_sent(code: int) -> None:
    with pytest.raises(ValueError, match=f"close code {code} may not be sent"):
        WebSocketClose(code)


def test_websocket_close_refuses_a_reason_over_123_bytes_and_takes_123() -> None:
    with pytest.raises(ValueError, match="at most 123 bytes"):
        WebSocketClose(4000, LONG_REASON)
    assert WebSocketClose(4000, LONGEST_REASON).reason == LONGEST_REASON


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1010, 1011, 1014, 3000, 4999])
def test_websocket_close_takes_every_code_a_sender_may_send(code: int) -> None:
    assert WebSocketClose(code, "why").code == code


@pytest.mark.parametrize(
    ("code", "reason"),
    [(1005, ""), (1006, ""), (5000, ""), pytest.param(4000, LONG_REASON, id="long-reason")],
)
async def test_close_refuses_what_cannot_be_sent_before_doing_anything(code: int, reason: str) -> None:
    refused: list[str] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            await ws.close(code, reason)
        except ValueError as exc:
            refused.append(str(exc))
        await ws.send_text("still open")  # the connection is as it was

    async with open_test_client(handler) as client:
        assert await client.receive_text(timeout=5) == "still open"
        assert await client.wait_closed(timeout=5) == CloseCode.NORMAL_CLOSURE
    assert len(refused) == 1


@pytest.mark.parametrize(
    ("code", "reason"), [(1005, ""), (1006, ""), (999, ""), (1015, ""), (4000, LONG_REASON)]
)
async def test_raising_an_invalid_websocket_close_fails_the_handler_with_1011(
    code: int, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        raise WebSocketClose(code, reason)

    async with open_test_client(handler, raise_server_exceptions=False) as client:
        assert await client.wait_closed(timeout=5) == CloseCode.INTERNAL_ERROR  # a close frame came
    failures = [r for r in caplog.records if r.getMessage() == "handler for / failed"]
    assert len(failures) == 1
    assert failures[0].exc_info is not None and failures[0].exc_info[0] is ValueError


@pytest.mark.parametrize(
    ("code", "reason"),
    [(1005, ""), (1006, ""), (5000, ""), pytest.param(4000, LONG_REASON, id="long-reason")],
)
async def test_a_websocket_close_changed_after_it_was_made_still_sends_a_close_frame(
    code: int, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        close = WebSocketClose(4000, "fine")
        close.code, close.reason = code, reason  # past the check: what reaches the server's exit path
        raise close

    async with open_test_client(handler, raise_server_exceptions=False) as client:
        assert await client.wait_closed(timeout=5) == CloseCode.INTERNAL_ERROR
        assert client.close_reason == ""
    assert "closing with 1011" in caplog.text
    assert "connection failed" not in caplog.text


async def test_invalid_close_over_tcp_gives_the_peer_a_close_frame() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        raise WebSocketClose(1005)

    async with (
        open_websocket_server(handler, "127.0.0.1", 0) as server,
        open_websocket("127.0.0.1", server.port, "/") as ws,
    ):
        with pytest.raises(WebSocketDisconnect) as info:
            await ws.receive()
    assert info.value.code == CloseCode.INTERNAL_ERROR  # not 1006: the connection did not just drop


# ------------------------------------------------- WebSocketClose in a group


async def test_websocket_close_from_a_child_task_closes_with_its_code_and_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def refuse_later() -> None:
        await trio.lowlevel.checkpoint()
        raise WebSocketClose(4003, "not allowed")

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(refuse_later)
            await trio.sleep_forever()

    with caplog.at_level(logging.DEBUG, logger="trio_ws"):
        async with open_test_client(handler) as client:
            assert await client.wait_closed(timeout=5) == 4003
            assert client.close_reason == "not allowed"
    assert "failed" not in caplog.text  # not a handler failure: nothing logged


async def test_websocket_close_in_nested_groups_closes_with_its_code() -> None:
    async def refuse() -> None:
        await trio.lowlevel.checkpoint()
        raise WebSocketClose(4004, "deep")

    async def inner() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(refuse)
            await trio.sleep_forever()

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(inner)
            await trio.sleep_forever()

    async with open_test_client(handler) as client:
        assert await client.wait_closed(timeout=5) == 4004
        assert client.close_reason == "deep"


@pytest.mark.parametrize(
    ("group", "code", "reason"),
    [
        (ExceptionGroup("", [WebSocketClose(4001, "first"), WebSocketClose(4002, "second")]), 4001, "first"),
        (ExceptionGroup("", [WebSocketDisconnect(1001), WebSocketClose(4002, "only")]), 4002, "only"),
        (
            ExceptionGroup("", [ExceptionGroup("", [WebSocketClose(4005, "inner")]), WebSocketClose(4006)]),
            4005,
            "inner",
        ),
    ],
)
async def test_a_group_of_closes_and_disconnects_closes_with_the_first_close(
    group: ExceptionGroup[Exception], code: int, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        raise group

    async with open_test_client(handler) as client:
        assert await client.wait_closed(timeout=5) == code
        assert client.close_reason == reason
    assert "failed" not in caplog.text


async def test_a_mixed_group_is_a_handler_failure_with_1011(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        raise ExceptionGroup("", [WebSocketClose(4001, "asked"), RuntimeError("a bug")])

    async with open_test_client(handler, raise_server_exceptions=False) as client:
        assert await client.wait_closed(timeout=5) == CloseCode.INTERNAL_ERROR
        assert client.close_reason == ""
    assert [r.getMessage() for r in caplog.records].count("handler for / failed") == 1


async def test_a_group_of_disconnects_only_is_the_peer_going_away(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        raise ExceptionGroup("", [ExceptionGroup("", [WebSocketDisconnect(1001)]), WebSocketDisconnect()])

    async with open_test_client(handler) as client:
        assert await client.wait_closed(timeout=5) == CloseCode.NORMAL_CLOSURE
    assert "failed" not in caplog.text


async def test_a_group_with_a_close_before_accept_refuses_with_403() -> None:
    async def handler(ws: WebSocket) -> None:
        raise ExceptionGroup("", [WebSocketClose(4001)])

    with pytest.raises(HandshakeRejected) as info:
        async with open_test_client(handler):
            pass  # pragma: no cover
    assert info.value.status == 403  # as a bare WebSocketClose before accept()
