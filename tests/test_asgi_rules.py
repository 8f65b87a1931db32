"""The ASGI WebSocket rules, checked from the application's side with a raw ASGI application: every
message its state does not allow raises in the application (and the connection stays sound), and
the events it receives, and what the client sees when it returns or raises."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

from trio_ws import CloseCode, HandshakeRejected, WebSocketDisconnect, WebSocketOptions, open_websocket
from trio_ws.asgi import ClientDisconnected, Message, Receive, Scope, Send, open_asgi_server
from trio_ws.client import connect_websocket, run_client

Scenario = Callable[[Receive, Send], Awaitable[None]]

ACCEPT: Message = {"type": "websocket.accept"}
CLOSE: Message = {"type": "websocket.close", "code": 1000}
TEXT: Message = {"type": "websocket.send", "text": "ok"}
START: Message = {"type": "websocket.http.response.start", "status": 403, "headers": []}
BODY: Message = {"type": "websocket.http.response.body", "body": b"no"}

#: What each scenario's wrong message raised in the application: path -> (exception type, text).
RAISED: dict[str, tuple[str, str]] = {}


async def expect_error(path: str, call: Awaitable[Any]) -> None:
    try:
        await call
    except (RuntimeError, ValueError) as exc:
        RAISED[path] = (type(exc).__name__, str(exc))
    else:
        RAISED[path] = ("nothing", "")


async def send_before_accept(receive: Receive, send: Send) -> None:
    await receive()
    await expect_error("/send-before-accept", send(TEXT))
    await send(ACCEPT)
    await send(TEXT)


async def accept_twice(receive: Receive, send: Send) -> None:
    await send(ACCEPT)
    await expect_error("/accept-twice", send(ACCEPT))
    await send(TEXT)


async def unknown_before_accept(receive: Receive, send: Send) -> None:
    await expect_error("/unknown-before-accept", send({"type": "websocket.bogus"}))
    await send(ACCEPT)
    await send(TEXT)


async def unknown_after_accept(receive: Receive, send: Send) -> None:
    await send(ACCEPT)
    await expect_error("/unknown-after-accept", send({"type": "http.response.start", "status": 200}))
    await send(TEXT)


async def neither_text_nor_bytes(receive: Receive, send: Send) -> None:
    await send(ACCEPT)
    await expect_error("/neither-text-nor-bytes", send({"type": "websocket.send"}))
    await send(TEXT)


async def both_text_and_bytes(receive: Receive, send: Send) -> None:
    await send(ACCEPT)
    await expect_error("/both-text-and-bytes", send({"type": "websocket.send", "text": "a", "bytes": b"b"}))
    await send(TEXT)


async def text_as_bytes(receive: Receive, send: Send) -> None:
    await send(ACCEPT)
    await expect_error("/text-as-bytes", send({"type": "websocket.send", "text": b"a"}))
    await send(TEXT)


async def bytes_as_str(receive: Receive, send: Send) -> None:
    await send(ACCEPT)
    await expect_error("/bytes-as-str", send({"type": "websocket.send", "bytes": "a"}))
    await send(TEXT)


async def accept_with_str_headers(receive: Receive, send: Send) -> None:
    await expect_error("/accept-with-str-headers", send({**ACCEPT, "headers": [("x-a", "1")]}))
    await send(ACCEPT)
    await send(TEXT)


async def close_with_str_code(receive: Receive, send: Send) -> None:
    await send(ACCEPT)
    await expect_error("/close-with-str-code", send({**CLOSE, "code": "1000"}))
    await send(TEXT)


async def send_after_close(receive: Receive, send: Send) -> None:
    await send(ACCEPT)
    await send(TEXT)
    await send(CLOSE)
    await expect_error("/send-after-close", send(TEXT))


async def close_after_close(receive: Receive, send: Send) -> None:
    await send(ACCEPT)
    await send(TEXT)
    await send(CLOSE)
    await expect_error("/close-after-close", send(CLOSE))


async def receive_after_disconnect(receive: Receive, send: Send) -> None:
    await send(ACCEPT)
    await send(TEXT)
    assert (await receive())["type"] == "websocket.connect"
    while (await receive())["type"] != "websocket.disconnect":
        pass
    await expect_error("/receive-after-disconnect", receive())


async def denial_with_str_headers(receive: Receive, send: Send) -> None:
    await expect_error("/denial-with-str-headers", send({**START, "headers": [("x-a", "1")]}))
    await send(START)
    await send(BODY)


async def body_before_start(receive: Receive, send: Send) -> None:
    await expect_error("/body-before-start", send(BODY))
    await send(START)
    await send(BODY)


async def accept_while_responding(receive: Receive, send: Send) -> None:
    await send(START)
    await expect_error("/accept-while-responding", send(ACCEPT))
    await send(BODY)


async def accept_after_denial(receive: Receive, send: Send) -> None:
    await send(START)
    await send(BODY)
    await expect_error("/accept-after-denial", send(ACCEPT))


async def accept_after_refusal(receive: Receive, send: Send) -> None:
    await send(CLOSE)
    await expect_error("/accept-after-refusal", send(ACCEPT))


async def denial_with_200(receive: Receive, send: Send) -> None:
    await expect_error("/denial-with-200", send({**START, "status": 200}))
    await send(START)
    await send(BODY)


#: Scenarios that end in an open connection that says "ok" (the wrong message broke nothing).
ANSWERING = {
    "/send-before-accept": send_before_accept,
    "/accept-twice": accept_twice,
    "/unknown-before-accept": unknown_before_accept,
    "/unknown-after-accept": unknown_after_accept,
    "/neither-text-nor-bytes": neither_text_nor_bytes,
    "/both-text-and-bytes": both_text_and_bytes,
    "/text-as-bytes": text_as_bytes,
    "/bytes-as-str": bytes_as_str,
    "/accept-with-str-headers": accept_with_str_headers,
    "/close-with-str-code": close_with_str_code,
    "/send-after-close": send_after_close,
    "/close-after-close": close_after_close,
    "/receive-after-disconnect": receive_after_disconnect,
}
#: Scenarios whose message is malformed (ValueError), not out of turn (RuntimeError).
MALFORMED = {
    "/neither-text-nor-bytes",
    "/both-text-and-bytes",
    "/text-as-bytes",
    "/bytes-as-str",
    "/accept-with-str-headers",
    "/close-with-str-code",
}
#: Scenarios that end in the denial response (403, "no").
DENYING = {
    "/body-before-start": body_before_start,
    "/accept-while-responding": accept_while_responding,
    "/accept-after-denial": accept_after_denial,
    "/denial-with-200": denial_with_200,
    "/denial-with-str-headers": denial_with_str_headers,
}
SCENARIOS: dict[str, Scenario] = {**ANSWERING, **DENYING, "/accept-after-refusal": accept_after_refusal}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "websocket":
        raise RuntimeError("only websockets here")  # (lifespan="auto": not supported, fine)
    await SCENARIOS[scope["path"]](receive, send)


@pytest.mark.parametrize("path", sorted(ANSWERING))
async def test_a_message_out_of_turn_raises_in_the_app_and_the_connection_goes_on(path: str) -> None:
    RAISED.clear()
    async with (
        open_asgi_server(app, "127.0.0.1", 0) as server,
        open_websocket("127.0.0.1", server.port, path) as ws,
    ):
        assert await ws.receive_text() == "ok"
        if path == "/receive-after-disconnect":
            await ws.close()
        else:
            with pytest.raises(WebSocketDisconnect):
                await ws.receive_text()
    # (leaving the block waited for the application: it is done)
    expected = "ValueError" if path in MALFORMED else "RuntimeError"
    assert RAISED[path][0] == expected, RAISED[path]


@pytest.mark.parametrize("path", sorted(DENYING))
async def test_a_message_out_of_turn_while_denying_raises_and_the_denial_goes_out(path: str) -> None:
    RAISED.clear()
    async with open_asgi_server(app, "127.0.0.1", 0) as server:
        with pytest.raises(HandshakeRejected) as refused:
            async with open_websocket("127.0.0.1", server.port, path):
                pass
    assert (refused.value.status, refused.value.body) == (403, b"no")
    assert RAISED[path][0] == ("ValueError" if "str-headers" in path else "RuntimeError"), RAISED[path]


async def test_a_message_after_a_refusal_raises() -> None:
    RAISED.clear()
    async with open_asgi_server(app, "127.0.0.1", 0) as server:
        with pytest.raises(HandshakeRejected) as refused:
            async with open_websocket("127.0.0.1", server.port, "/accept-after-refusal"):
                pass
    assert refused.value.status == 403
    assert RAISED["/accept-after-refusal"][0] == "RuntimeError"


# ------------------------------------------------------------------ the events and the endings


async def serve_one(scenario: Scenario) -> Any:
    """Run ``scenario`` as the application of one connection; what the client saw: the exception
    of its handshake or of its first receive, else the text."""

    async def one(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await scenario(receive, send)

    async with open_asgi_server(one, "127.0.0.1", 0, lifespan="off") as server:
        try:
            async with open_websocket("127.0.0.1", server.port, "/") as ws:
                return await ws.receive_text()
        except (HandshakeRejected, WebSocketDisconnect) as exc:
            return exc


@pytest.mark.parametrize(
    ("scenario_name", "status"),
    [("returns_before_accept", 403), ("raises_before_accept", 500), ("returns_mid_denial", 500)],
)
async def test_endings_before_the_handshake_is_answered(scenario_name: str, status: int) -> None:
    async def returns_before_accept(receive: Receive, send: Send) -> None:
        await receive()

    async def raises_before_accept(receive: Receive, send: Send) -> None:
        raise KeyError("boom")

    async def returns_mid_denial(receive: Receive, send: Send) -> None:
        await send(START)
        await send({**BODY, "more_body": True})

    scenario = locals()[scenario_name]
    seen = await serve_one(scenario)
    assert isinstance(seen, HandshakeRejected)
    assert seen.status == status


@pytest.mark.parametrize(
    ("raises", "code"), [(False, CloseCode.NORMAL_CLOSURE), (True, CloseCode.INTERNAL_ERROR)]
)
async def test_endings_after_accept(raises: bool, code: int) -> None:
    async def scenario(receive: Receive, send: Send) -> None:
        await send(ACCEPT)
        if raises:
            raise KeyError("boom")

    async def one(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await scenario(receive, send)

    async with (
        open_asgi_server(one, "127.0.0.1", 0, lifespan="off") as server,
        open_websocket("127.0.0.1", server.port, "/") as ws,
    ):
        with pytest.raises(WebSocketDisconnect) as disconnect:
            await ws.receive_text()
    assert disconnect.value.code == code


async def test_close_before_accept_is_403_and_then_receive_says_1006() -> None:
    events: list[Message] = []

    async def scenario(receive: Receive, send: Send) -> None:
        events.append(await receive())
        await send(CLOSE)
        events.append(await receive())

    seen = await serve_one(scenario)
    assert isinstance(seen, HandshakeRejected) and seen.status == 403
    assert events == [
        {"type": "websocket.connect"},
        {"type": "websocket.disconnect", "code": 1006, "reason": ""},
    ]


async def test_a_receive_before_the_answer_waits_for_it() -> None:
    events: list[Message] = []

    async def scenario(receive: Receive, send: Send) -> None:
        events.append(await receive())
        async with trio.open_nursery() as nursery:

            async def receive_one() -> None:
                events.append(await receive())

            nursery.start_soon(receive_one)
            await trio.testing.wait_all_tasks_blocked()
            assert len(events) == 1  # waiting, not refused, not failing
            await send(ACCEPT)
            await send(TEXT)
        await send(CLOSE)

    async def one(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await scenario(receive, send)

    async with (
        open_asgi_server(one, "127.0.0.1", 0, lifespan="off") as server,
        open_websocket("127.0.0.1", server.port, "/") as ws,
    ):
        assert await ws.receive_text() == "ok"
        await ws.send_text("from the client")
        with pytest.raises(WebSocketDisconnect):
            await ws.receive_text()
    assert events == [
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "from the client"},
    ]


async def test_send_once_the_client_is_gone_raises_an_oserror() -> None:
    raised: list[BaseException] = []

    async def one(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return
        await send(ACCEPT)
        message = await receive()
        while message["type"] != "websocket.disconnect":
            message = await receive()
        assert (message["code"], message["reason"]) == (4000, "bye")
        try:
            await send(TEXT)
        except OSError as exc:
            raised.append(exc)
            raise

    async with (
        open_asgi_server(one, "127.0.0.1", 0, lifespan="off") as server,
        open_websocket("127.0.0.1", server.port, "/") as ws,
    ):
        await ws.close(4000, "bye")
    assert isinstance(raised[0], ClientDisconnected)


@pytest.mark.parametrize("how", ["close-frame", "dropped"])
async def test_websocket_close_once_the_client_is_gone_raises_client_disconnected(how: str) -> None:
    raised: list[BaseException | None] = []

    async def one(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return
        await send(ACCEPT)
        while (await receive())["type"] != "websocket.disconnect":
            pass
        try:
            await send(CLOSE)
        except OSError as exc:
            raised.append(exc)
        else:
            raised.append(None)

    async with open_asgi_server(one, listeners=[], lifespan="off") as server, trio.open_nursery() as nursery:
        client_stream, server_stream = trio.testing.memory_stream_pair()
        nursery.start_soon(server.serve_stream, server_stream)
        handshake = await connect_websocket(client_stream, "x", "/", WebSocketOptions())
        async with run_client(handshake) as ws:
            if how == "close-frame":
                await ws.close(4000, "bye")
            else:
                await client_stream.aclose()
        with trio.fail_after(5):
            await server.aclose()
    (error,) = raised
    assert isinstance(error, ClientDisconnected), error


async def test_an_app_still_running_after_its_connection_closed_is_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    caught: list[str] = []

    async def one(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return
        await send(ACCEPT)
        try:
            await trio.sleep_forever()  # (never receives: does not see the 1001)
        except BaseException as exc:
            caught.append(type(exc).__name__)
            raise

    async with (
        open_asgi_server(one, listeners=[], lifespan="off", close_timeout=5) as server,
        trio.open_nursery() as nursery,
    ):
        client_stream, server_stream = trio.testing.memory_stream_pair()
        nursery.start_soon(server.serve_stream, server_stream)
        handshake = await connect_websocket(client_stream, "x", "/", WebSocketOptions())
        async with run_client(handshake) as ws:
            start = trio.current_time()
            await server.aclose()
            assert ws.close_code == CloseCode.GOING_AWAY
    assert trio.current_time() - start == pytest.approx(5)
    assert caught == ["Cancelled"]  # (trio's own cancellation, passed through the bridge)
