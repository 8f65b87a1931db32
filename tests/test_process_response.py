"""The server's ``process_response`` hook: called when the handler accepts, before the 101 is written;
it may change the 101's headers or refuse the handshake with an ``HTTPResponse``; its errors are a
500, logged once."""

from __future__ import annotations

import base64
import functools
import logging
import os
from typing import Any

import pytest
import trio
import websockets.sync.client as ws_sync

from trio_ws import (
    HandshakeRejected,
    HTTPResponse,
    WebSocket,
    WebSocketDisconnect,
    open_websocket,
    open_websocket_server,
    serve_websocket,
)
from trio_ws.testing import open_test_client

Headers = list[tuple[str, str]]


async def raw_handshake(port: int, path: str = "/") -> bytes:
    """Send an upgrade request; return the response head (up to the blank line)."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request.encode())
        data = b""
        while b"\r\n\r\n" not in data and (chunk := await stream.receive_some()):
            data += chunk
    return data.partition(b"\r\n\r\n")[0]


async def greet(ws: WebSocket) -> None:
    await ws.accept(headers=[("X-Debug", "1"), ("X-Keep", "yes")])
    await ws.send_text(f"hello {ws.subprotocol}")


async def test_the_hook_sets_a_cookie_and_drops_headers_in_the_101() -> None:
    calls: list[Any] = []

    async def process_response(ws: WebSocket, headers: Headers) -> HTTPResponse | None:
        calls.append((ws.path, ws.subprotocol, list(headers)))
        headers[:] = [(n, v) for n, v in headers if n not in ("X-Debug", "Server")]
        headers.append(("Set-Cookie", "session=abc; HttpOnly"))
        return None

    async with open_websocket_server(
        greet, "127.0.0.1", 0, subprotocols=["chat"], process_response=process_response
    ) as server:
        head = await raw_handshake(server.port, "/room")

        def client() -> tuple[str | None, str | None, str | None, str]:
            url = f"ws://127.0.0.1:{server.port}/x"
            with ws_sync.connect(url, subprotocols=["chat"]) as conn:  # type: ignore[list-item]
                assert conn.response is not None
                headers = conn.response.headers
                return (
                    headers.get("Set-Cookie"),
                    headers.get("X-Debug"),
                    headers.get("X-Keep"),
                    str(conn.recv(5)),
                )

        answer = await trio.to_thread.run_sync(client)
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"\r\nSet-Cookie: session=abc; HttpOnly" in head
    assert b"X-Debug" not in head and b"Server:" not in head
    assert b"\r\nX-Keep: yes" in head
    assert b"\r\nSec-WebSocket-Accept: " in head  # the handshake's own headers are untouched
    assert answer == ("session=abc; HttpOnly", None, "yes", "hello chat")
    assert calls[0] == ("/room", None, [("X-Debug", "1"), ("X-Keep", "yes"), ("Server", "trio_ws")])
    assert calls[1][:2] == ("/x", "chat")  # the hook sees the subprotocol chosen


async def test_the_hook_refuses_with_an_http_response() -> None:
    seen: list[Any] = []

    async def process_response(ws: WebSocket, headers: Headers) -> HTTPResponse | None:
        return HTTPResponse(403, "no cookie for you\n", [("X-Why", "policy")])

    async def handler(ws: WebSocket) -> None:
        try:
            await ws.accept()
        except WebSocketDisconnect as exc:
            seen.append((exc.code, ws.refused_status))
            raise

    with pytest.raises(HandshakeRejected) as info:
        async with open_test_client(handler, process_response=process_response):
            pass  # pragma: no cover
    assert (info.value.status, info.value.body) == (403, b"no cookie for you\n")
    assert info.value.headers is not None and info.value.headers["x-why"] == "policy"
    assert seen == [(1006, 403)]


@pytest.mark.parametrize("failure", ["raises", "bad header", "handshake header", "status 101"])
async def test_a_failing_hook_is_a_500_logged_once(failure: str, caplog: pytest.LogCaptureFixture) -> None:
    async def process_response(ws: WebSocket, headers: Headers) -> HTTPResponse | None:
        if failure == "raises":
            raise RuntimeError("secret hook detail")
        if failure == "bad header":
            headers.append(("Set-Cookie", "a=1\r\nX-Injected: 1"))
        if failure == "handshake header":
            headers.append(("Sec-WebSocket-Accept", "forged"))
        if failure == "status 101":
            return HTTPResponse(101)
        return None

    with caplog.at_level(logging.INFO, logger="trio_ws"), pytest.raises(HandshakeRejected) as info:
        async with open_test_client(greet, process_response=process_response):
            pass  # pragma: no cover
    assert info.value.status == 500
    assert b"secret" not in info.value.body and b"Injected" not in info.value.body
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == ["process_response failed for /"]


async def test_the_hook_is_not_called_when_the_handler_refuses_or_process_request_answers() -> None:
    calls: list[str] = []

    async def process_response(ws: WebSocket, headers: Headers) -> HTTPResponse | None:
        calls.append(ws.path)
        return None

    async def process_request(request: Any) -> HTTPResponse | None:
        return HTTPResponse(200, "ok\n") if request.path == "/health" else None

    async def refuse(ws: WebSocket) -> None:
        await ws.reject(401)

    with pytest.raises(HandshakeRejected):
        async with open_test_client(refuse, process_response=process_response):
            pass  # pragma: no cover
    with pytest.raises(HandshakeRejected):
        async with open_test_client(
            greet, "/health", process_request=process_request, process_response=process_response
        ):
            pass  # pragma: no cover
    async with open_test_client(greet, "/ok", process_response=process_response) as client:
        assert await client.receive_text(timeout=5) == "hello None"
    assert calls == ["/ok"]


async def test_serve_websocket_takes_the_hook(nursery: trio.Nursery) -> None:
    async def process_response(ws: WebSocket, headers: Headers) -> HTTPResponse | None:
        headers.append(("X-Served", "yes"))
        return None

    serve = functools.partial(serve_websocket, greet, "127.0.0.1", 0, process_response=process_response)
    server = await nursery.start(serve)
    assert b"\r\nX-Served: yes" in await raw_handshake(server.port)
    async with open_websocket("127.0.0.1", server.port) as ws:
        assert await ws.receive_text() == "hello None"
