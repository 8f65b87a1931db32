"""trio_ws handlers as an ASGI application (trio_ws.asgi.as_asgi), driven by hand: the ASGI events
a server would send, the messages the application sends back."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing
from asgi_driver import asgi_call, websocket_scope

from trio_ws import (
    BearerToken,
    DeflateOptions,
    HTTPResponse,
    IsAuthenticated,
    Request,
    Router,
    WebSocket,
    WebSocketDisconnect,
    WebSocketState,
)
from trio_ws.asgi import as_asgi


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    async for message in ws:
        if isinstance(message, str):
            await ws.send_text(message)
        else:
            await ws.send_bytes(message)


async def test_accept_gives_the_subprotocol_and_the_extra_headers() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept(subprotocol="b", headers=[("X-Room", "lobby")])
        await ws.close()

    app = as_asgi(handler)
    async with asgi_call(app, websocket_scope(subprotocols=["a", "b"])) as call:
        accept = await call.get()
        assert accept == {"type": "websocket.accept", "subprotocol": "b", "headers": [(b"x-room", b"lobby")]}
        assert (await call.get())["type"] == "websocket.close"


async def test_the_servers_subprotocols_choose_when_the_handler_does_not() -> None:
    app = as_asgi(echo, subprotocols=["b"])
    async with asgi_call(app, websocket_scope(subprotocols=["a", "b"])) as call:
        assert (await call.get())["subprotocol"] == "b"
        await call.put({"type": "websocket.disconnect", "code": 1000})


async def test_text_bytes_and_json_are_echoed() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text(await ws.receive_text())
        await ws.send_bytes(await ws.receive_bytes())
        await ws.send_json({"got": await ws.receive_json()})
        await ws.receive_text()

    async with asgi_call(as_asgi(handler), websocket_scope()) as call:
        assert (await call.get())["type"] == "websocket.accept"
        await call.put({"type": "websocket.receive", "text": "héllo", "bytes": None})
        assert await call.get() == {"type": "websocket.send", "text": "héllo"}
        await call.put({"type": "websocket.receive", "bytes": b"\x00\xff", "text": None})
        assert await call.get() == {"type": "websocket.send", "bytes": b"\x00\xff"}
        await call.put({"type": "websocket.receive", "text": '{"a": [1, 2]}'})
        assert await call.get() == {"type": "websocket.send", "text": '{"got":{"a":[1,2]}}'}
        await call.put({"type": "websocket.disconnect", "code": 1001})


async def test_a_handler_close_goes_out_with_its_code_and_reason_and_the_call_ends() -> None:
    seen: list[int | None] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws.close(4000, "bye")
        seen.append(ws.close_code)

    async with asgi_call(as_asgi(handler), websocket_scope()) as call:
        assert (await call.get())["type"] == "websocket.accept"
        assert await call.get() == {"type": "websocket.close", "code": 4000, "reason": "bye"}
        await call.finished()  # the closing handshake completed without the client
        assert call.pending() == []
    assert seen == [4000]


async def test_a_client_disconnect_reaches_a_waiting_handler_with_its_code() -> None:
    seen: list[tuple[int, str]] = []

    async def handler(ws: WebSocket) -> None:
        assert (ws.application_state, ws.client_state) == (WebSocketState.CONNECTING,) * 2
        await ws.accept()
        assert (ws.application_state, ws.client_state) == (WebSocketState.CONNECTED,) * 2
        try:
            await ws.receive_text()
        except WebSocketDisconnect as exc:
            seen.append((exc.code, exc.reason))
        assert ws.client_state is WebSocketState.DISCONNECTED

    async with asgi_call(as_asgi(handler), websocket_scope()) as call:
        assert (await call.get())["type"] == "websocket.accept"
        await trio.testing.wait_all_tasks_blocked()  # the handler waits in receive_text()
        await call.put({"type": "websocket.disconnect", "code": 4001, "reason": "gone"})
        await call.finished()
        assert call.pending() == []  # nothing is sent to a client that is gone
    assert seen == [(4001, "gone")]


async def test_messages_before_a_disconnect_are_received_first() -> None:
    got: list[Any] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        got.extend([text async for text in ws.iter_text()])
        got.append(ws.close_code)

    async with asgi_call(as_asgi(handler), websocket_scope()) as call:
        for text in ("a", "b", "c"):
            await call.put({"type": "websocket.receive", "text": text})
        await call.put({"type": "websocket.disconnect", "code": 1000})
    assert got == ["a", "b", "c", 1000]


@pytest.mark.parametrize(("message", "code"), [({}, 1005), ({"code": 1005}, 1005), ({"code": 1006}, 1006)])
async def test_a_disconnect_without_a_code_is_1005_and_a_lost_connection_1006(
    message: dict[str, Any], code: int
) -> None:
    seen: list[int] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            await ws.receive()
        except WebSocketDisconnect as exc:
            seen.append(exc.code)

    async with asgi_call(as_asgi(handler), websocket_scope()) as call:
        assert (await call.get())["type"] == "websocket.accept"
        await call.put({"type": "websocket.disconnect", **message})
    assert seen == [code]


async def refuse(ws: WebSocket) -> None:
    await ws.reject(401, "who are you?", headers=[("WWW-Authenticate", "Bearer")])


async def test_a_refusal_is_the_http_response_when_the_server_offers_the_extension(
    autojump_clock: trio.testing.MockClock,
) -> None:
    start_time = trio.current_time()
    async with asgi_call(as_asgi(refuse), websocket_scope()) as call:
        start = await call.get()
        assert start["type"] == "websocket.http.response.start"
        assert start["status"] == 401
        assert (b"www-authenticate", b"Bearer") in start["headers"]
        assert (b"content-length", b"12") in start["headers"]
        assert not any(name == b"connection" for name, _ in start["headers"])  # the server's business
        assert await call.get() == {"type": "websocket.http.response.body", "body": b"who are you?"}
        await call.finished()
        assert call.pending() == []
    assert trio.current_time() - start_time < 0.5  # the server does not linger for the client


async def test_a_refusal_is_a_close_before_accept_without_the_extension(
    autojump_clock: trio.testing.MockClock,
) -> None:
    start_time = trio.current_time()
    async with asgi_call(as_asgi(refuse), websocket_scope(denial=False)) as call:
        assert await call.get() == {"type": "websocket.close", "code": 1000}
        await call.finished()
        assert call.pending() == []
    assert trio.current_time() - start_time < 0.5


async def test_a_failing_handler_gets_500_before_accept_and_1011_after(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def early(ws: WebSocket) -> None:
        raise RuntimeError("secret detail")

    async def late(ws: WebSocket) -> None:
        await ws.accept()
        await ws.receive_text()
        raise RuntimeError("secret detail")

    with caplog.at_level(logging.ERROR, "trio_ws"):
        async with asgi_call(as_asgi(early), websocket_scope("/early")) as call:
            start = await call.get()
            assert start["status"] == 500
            body = await call.get()
            assert b"secret" not in body["body"]
        assert call.error is None  # nothing reaches the ASGI server
        async with asgi_call(as_asgi(late), websocket_scope("/late")) as call:
            assert (await call.get())["type"] == "websocket.accept"
            await call.put({"type": "websocket.receive", "text": "go"})
            assert await call.get() == {"type": "websocket.close", "code": 1011, "reason": ""}
        assert call.error is None
    failures = [r.getMessage() for r in caplog.records if r.exc_info]
    assert failures == ["handler for /early failed", "handler for /late failed"]


async def test_large_messages_pass_and_oversized_ones_close_with_1009() -> None:
    app = as_asgi(echo, max_message_size=2**20)
    big = "x" * (2**20 - 10)
    async with asgi_call(app, websocket_scope()) as call:
        assert (await call.get())["type"] == "websocket.accept"
        await call.put({"type": "websocket.receive", "bytes": bytes(range(256)) * 4096})
        assert await call.get() == {"type": "websocket.send", "bytes": bytes(range(256)) * 4096}
        await call.put({"type": "websocket.receive", "text": big})
        assert await call.get() == {"type": "websocket.send", "text": big}
        await call.put({"type": "websocket.receive", "bytes": b"\x00" * (2**20 + 1)})
        close = await call.get()
        assert (close["type"], close["code"]) == ("websocket.close", 1009)


async def test_a_router_under_a_mount_matches_what_follows_root_path() -> None:
    router = Router()
    seen: list[Any] = []

    @router.websocket("/chat/{n:int}")
    async def chat(ws: WebSocket, n: int) -> None:
        assert ws.request is not None
        seen.append((n, ws.path, ws.request.route_path, ws.scope["root_path"], str(ws.url)))
        await ws.accept()
        await ws.close()

    app = as_asgi(router)
    async with asgi_call(app, websocket_scope("/ws/chat/7", root_path="/ws")) as call:
        assert (await call.get())["type"] == "websocket.accept"
    assert seen == [(7, "/ws/chat/7", "/chat/7", "/ws", "ws://example.com/ws/chat/7")]
    for path in ("/ws/chat/seven", "/ws/other", "/wsx/chat/7"):
        async with asgi_call(app, websocket_scope(path, root_path="/ws")) as call:
            assert (await call.get())["status"] == 403, path
    async with asgi_call(app, websocket_scope("/chat/8", root_path="/ws")) as call:  # not under it
        assert (await call.get())["type"] == "websocket.accept"
    assert seen[-1][0] == 8


async def test_the_request_comes_from_the_scope() -> None:
    seen: dict[str, Any] = {}

    async def handler(ws: WebSocket) -> None:
        assert ws.request is not None
        seen.update(
            client=ws.client,
            url=str(ws.url),
            path=ws.path,
            tags=ws.query_params.getlist("tag"),
            cookie=ws.cookies.get("sid"),
            agent=ws.headers.get("user-agent"),
            offered=ws.request.subprotocols,
            extensions=ws.request.extensions,
            keys=ws.headers.getlist("sec-websocket-key"),
        )
        await ws.reject(404)

    scope = websocket_scope(
        "/a b/é",
        raw_path=b"/a%20b/%C3%A9",
        query=b"tag=1&tag=2",
        headers=[(b"cookie", b"sid=abc"), (b"user-agent", b"tests/1.0")],
        subprotocols=["chat", "json"],
        client=("203.0.113.5", 5555),
        scheme="wss",
    )
    async with asgi_call(as_asgi(handler), scope) as call:
        assert (await call.get())["status"] == 404
    assert seen == {
        "client": ("203.0.113.5", 5555),
        "url": "wss://example.com/a%20b/%C3%A9?tag=1&tag=2",
        "path": "/a b/é",
        "tags": ["1", "2"],
        "cookie": "abc",
        "agent": "tests/1.0",
        "offered": ["chat", "json"],
        "extensions": [],  # compression is the ASGI server's: nothing is offered to trio_ws
        "keys": ["dGhlIHNhbXBsZSBub25jZQ=="],  # one key: the scope's own is not carried over
    }


async def test_the_security_settings_apply() -> None:
    def verify(token: str) -> str | None:
        return "alice" if token == "s3cret" else None

    async def hello(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text(f"hello {ws.user}")
        await ws.close()

    app = as_asgi(
        hello, origins=["https://good.example"], auth=[BearerToken(verify)], guards=[IsAuthenticated()]
    )
    good = (b"origin", b"https://good.example")
    cases = [
        ([(b"origin", b"https://evil.example")], 403),
        ([good], 401),
        ([good, (b"authorization", b"Bearer wrong")], 401),
    ]
    for headers, status in cases:
        async with asgi_call(app, websocket_scope(headers=headers)) as call:
            assert (await call.get())["status"] == status
    async with asgi_call(app, websocket_scope(headers=[good, (b"authorization", b"Bearer s3cret")])) as call:
        assert (await call.get())["type"] == "websocket.accept"
        assert await call.get() == {"type": "websocket.send", "text": "hello alice"}


async def test_max_connections_per_client_counts_the_scopes_client() -> None:
    app = as_asgi(echo, max_connections_per_client=1)
    async with asgi_call(app, websocket_scope(client=("10.1.1.1", 1))) as first:
        assert (await first.get())["type"] == "websocket.accept"
        async with asgi_call(app, websocket_scope(client=("10.1.1.1", 2))) as second:
            assert (await second.get())["status"] == 429
        async with asgi_call(app, websocket_scope(client=("10.2.2.2", 3))) as other:
            assert (await other.get())["type"] == "websocket.accept"
            await other.put({"type": "websocket.disconnect", "code": 1000})
        await first.put({"type": "websocket.disconnect", "code": 1000})


async def test_a_ping_from_the_handler_is_answered() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        with trio.fail_after(5):
            await ws.ping()
        await ws.send_text("pong came")
        await ws.close()

    async with asgi_call(as_asgi(handler), websocket_scope()) as call:
        assert (await call.get())["type"] == "websocket.accept"
        assert await call.get() == {"type": "websocket.send", "text": "pong came"}


async def test_a_failing_asgi_send_ends_the_connection_quietly(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[int] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                await ws.send_text(await ws.receive_text())
        except WebSocketDisconnect as exc:
            seen.append(exc.code)

    with caplog.at_level(logging.DEBUG, "trio_ws"):
        async with asgi_call(as_asgi(handler), websocket_scope(), failing_send=["websocket.send"]) as call:
            assert (await call.get())["type"] == "websocket.accept"
            await call.put({"type": "websocket.receive", "text": "x"})
            await call.put({"type": "websocket.receive", "text": "y"})
        assert call.error is None
    assert seen == [1006]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_no_task_started_by_the_handler_outlives_the_call() -> None:
    cancelled = trio.Event()

    async def forever() -> None:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        ws.nursery.start_soon(forever)
        await ws.receive_text()

    async with asgi_call(as_asgi(handler), websocket_scope()) as call:
        assert (await call.get())["type"] == "websocket.accept"
        await trio.testing.wait_all_tasks_blocked()
        await call.put({"type": "websocket.disconnect", "code": 1000})
    assert cancelled.is_set()


async def test_plain_http_gets_426_and_the_http_hook_answers() -> None:
    async def hook(request: Request) -> HTTPResponse | None:
        await trio.lowlevel.checkpoint()
        return HTTPResponse(200, "ok\n") if request.path == "/ws/health" else None

    app = as_asgi(echo, process_request=hook)
    scope = {"type": "http", "method": "GET", "path": "/ws/health", "root_path": "/ws", "headers": []}
    async with asgi_call(app, scope) as call:
        start = await call.get()
        assert (start["type"], start["status"]) == ("http.response.start", 200)
        assert await call.get() == {"type": "http.response.body", "body": b"ok\n"}
    async with asgi_call(app, {**scope, "path": "/ws/chat"}) as call:
        start = await call.get()
        assert start["status"] == 426
        assert (b"upgrade", b"websocket") in start["headers"]
        assert (await call.get())["type"] == "http.response.body"
    async with asgi_call(app, {**scope, "method": "HEAD", "path": "/ws/health"}) as call:
        assert (await call.get())["status"] == 200
        assert await call.get() == {"type": "http.response.body", "body": b""}


async def test_settings_that_are_the_asgi_servers_are_refused() -> None:
    with pytest.raises(ValueError, match="compression is the ASGI server's"):
        as_asgi(echo, compression=DeflateOptions())
    with pytest.raises(ValueError, match="keepalive pings are the ASGI server's"):
        as_asgi(echo, ping_interval=5)
    with pytest.raises(ValueError, match="proxy_headers"):
        as_asgi(echo, proxy_headers="via")
    with pytest.raises(TypeError):
        as_asgi(echo, no_such_option=1)
    as_asgi(echo, compression=None, ping_interval=None)  # (saying so is fine)
    await trio.lowlevel.checkpoint()


async def test_other_scope_types_and_asyncio_get_a_clear_error() -> None:
    app = as_asgi(echo)

    async def nothing() -> dict[str, Any]:
        raise AssertionError("not called")

    async def ignore(message: Any) -> None:
        raise AssertionError("not called")

    with pytest.raises(ValueError, match="not 'telepathy'"):
        await app({"type": "telepathy"}, nothing, ignore)

    def on_asyncio() -> str:
        import asyncio

        try:
            asyncio.run(app(websocket_scope(), nothing, ignore))
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    message = await trio.to_thread.run_sync(on_asyncio)
    assert "runs on trio" in message
    assert "hypercorn --worker-class trio" in message


@pytest.mark.parametrize(
    ("root_path", "path", "route_path"),
    [
        ("", "/ws/chat", "/ws/chat"),
        ("/ws", "/ws/chat", "/chat"),
        ("/ws/", "/ws/chat", "/chat"),
        ("/ws", "/ws", "/"),
        ("/ws", "/wsx/chat", "/wsx/chat"),  # not under the mount point
        ("/ws", "/chat", "/chat"),  # an ASGI server that took the mount point off already
    ],
)
def test_route_path_is_what_follows_root_path(root_path: str, path: str, route_path: str) -> None:
    from trio_ws.protocol import Headers, RequestHead

    request = Request(RequestHead("GET", path, Headers()), root_path=root_path)
    assert (request.path, request.route_path) == (path, route_path)


async def test_an_event_out_of_place_from_the_asgi_server_drops_the_connection_with_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[int] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            await ws.receive()
        except WebSocketDisconnect as exc:
            seen.append(exc.code)

    with caplog.at_level(logging.ERROR, "trio_ws"):
        async with asgi_call(as_asgi(handler), websocket_scope()) as call:
            assert (await call.get())["type"] == "websocket.accept"
            await call.put({"type": "http.request", "body": b""})
        assert call.error is None
    assert seen == [1006]
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("trio_ws.asgi", "ASGI server sent 'http.request' on a websocket connection; connection dropped")
    ]
