"""A Starlette application on ``serve_asgi``, over real TCP, driven by real peers: httpx for its
pages, the websockets library's trio client for its WebSockets."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
import websockets.exceptions
from starlette.applications import Starlette
from starlette.endpoints import WebSocketEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.trio.client import connect

from trio_ws import HandshakeRejected, Router, WebSocketServer, open_websocket
from trio_ws import WebSocket as TrioWebSocket
from trio_ws.asgi import as_asgi, open_asgi_server, serve_asgi

#: What the application saw, in order (lifespan, disconnects), for the tests to check.
EVENTS: list[str] = []
_CHANGED: list[trio.Event] = []


def record(event: str) -> None:
    EVENTS.append(event)
    for changed in _CHANGED:
        changed.set()


async def seen(event: str) -> None:
    """Wait until the application recorded ``event``."""
    with trio.fail_after(5):
        while event not in EVENTS:
            changed = trio.Event()
            _CHANGED[:] = [changed]
            await changed.wait()


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    record("startup")
    yield {"greeting": "hello"}
    record("shutdown")


async def page(request: Request) -> Response:
    assert request.client is not None
    return JSONResponse(
        {
            "path": request.url.path,
            "greeting": request.state.greeting,
            "client_port": request.client.port,
            "scheme": request.url.scheme,
        }
    )


async def upload(request: Request) -> Response:
    chunks = [chunk async for chunk in request.stream()]
    body = b"".join(chunks)
    return PlainTextResponse(f"{len(body)} {hashlib.sha256(body).hexdigest()}")


async def numbers(request: Request) -> Response:
    async def count() -> AsyncIterator[bytes]:
        for n in range(5):
            yield f"{n}\n".encode()

    return StreamingResponse(count(), media_type="text/plain")


async def echo(websocket: WebSocket) -> None:
    offered = websocket.scope["subprotocols"]
    await websocket.accept(subprotocol="chat" if "chat" in offered else None)
    await websocket.send_text(f"{websocket.state.greeting} {websocket.url.path}")
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            record(f"disconnect {message['code']}")
            return
        if message.get("text") is not None:
            await websocket.send_text(message["text"])
        else:
            await websocket.send_bytes(message["bytes"])


async def guarded(websocket: WebSocket) -> None:
    if websocket.query_params.get("token") != "secret":
        await websocket.send_denial_response(PlainTextResponse("no token, no entry", status_code=401))
        return
    await websocket.accept()
    await websocket.send_text("welcome")
    await websocket.close(4003, "enough")


async def late_close(websocket: WebSocket) -> None:
    """Closes once the client is gone: Starlette turns the server's OSError into its
    ``WebSocketDisconnect`` (1006), which this endpoint lets through."""
    await websocket.accept()
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        try:
            await websocket.close()
        except WebSocketDisconnect as exc:
            record(f"close raised {exc.code}")
            raise


class Shouter(WebSocketEndpoint):
    encoding = "text"

    async def on_receive(self, websocket: WebSocket, data: Any) -> None:
        if data == "bye":
            await websocket.close(code=4001, reason="asked to")
            return
        await websocket.send_text(str(data).upper())

    async def on_disconnect(self, websocket: WebSocket, close_code: int) -> None:
        record(f"shouter closed {close_code}")


app = Starlette(
    routes=[
        Route("/page", page),
        Route("/upload", upload, methods=["POST"]),
        Route("/numbers", numbers),
        WebSocketRoute("/echo", echo),
        WebSocketRoute("/guarded", guarded),
        WebSocketRoute("/shout", Shouter),
        WebSocketRoute("/late-close", late_close),
    ],
    lifespan=lifespan,
)


@pytest.fixture
async def server() -> AsyncIterator[WebSocketServer]:
    EVENTS.clear()
    async with open_asgi_server(app, "127.0.0.1", 0) as server:
        yield server


async def test_pages_keep_alive_and_the_lifespan_state_reaches_http_scopes(server: WebSocketServer) -> None:
    base = f"http://127.0.0.1:{server.port}"
    async with httpx.AsyncClient(base_url=base) as client:
        first = await client.get("/page")
        second = await client.get("/page")
        missing = await client.get("/nowhere")
    assert first.status_code == 200
    assert first.json()["greeting"] == "hello"
    assert first.json()["scheme"] == "http"
    assert first.headers["server"] == "trio_ws"
    assert "date" in first.headers
    # One connection served both requests (keep-alive): the same client port.
    assert first.json()["client_port"] == second.json()["client_port"]
    assert missing.status_code == 404
    assert EVENTS == ["startup"]


async def test_a_chunked_request_body_reaches_the_application_whole(server: WebSocketServer) -> None:
    payload = bytes(range(256)) * 1000

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 7000):
            yield payload[start : start + 7000]

    async with httpx.AsyncClient() as client:
        response = await client.post(f"http://127.0.0.1:{server.port}/upload", content=body())
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.text == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}"


async def test_a_streaming_response_goes_out_chunked(server: WebSocketServer) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{server.port}/numbers")
    assert response.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in response.headers
    assert response.text == "0\n1\n2\n3\n4\n"


async def test_websocket_route_echo_with_a_subprotocol(server: WebSocketServer) -> None:
    async with connect(f"ws://127.0.0.1:{server.port}/echo", subprotocols=["chat"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "chat"
        assert await ws.recv() == "hello /echo"  # the lifespan state reached the websocket scope
        await ws.send("héllo")
        assert await ws.recv() == "héllo"
        await ws.send(b"\x00\xff")
        assert await ws.recv() == b"\x00\xff"
    await seen("disconnect 1000")


async def test_websocket_endpoint_close_codes_both_ways(server: WebSocketServer) -> None:
    url = f"ws://127.0.0.1:{server.port}/shout"
    async with connect(url) as ws:
        await ws.send("hi")
        assert await ws.recv() == "HI"
        await ws.send("bye")
        with pytest.raises(websockets.exceptions.ConnectionClosedError):
            await ws.recv()
        assert (ws.close_code, ws.close_reason) == (4001, "asked to")
    async with connect(url) as ws:
        await ws.send("hi")
        assert await ws.recv() == "HI"
        await ws.aclose(4002, "client leaves")
    await seen("shouter closed 4002")


async def test_a_close_once_the_client_is_gone_raises_in_starlette_and_is_one_quiet_line(
    server: WebSocketServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_ws")
    async with connect(f"ws://127.0.0.1:{server.port}/late-close") as ws:
        await ws.send("hi")
    await seen("close raised 1006")
    await server.aclose()  # (the handler is done)
    assert [r for r in caplog.records if r.exc_info] == []
    (line,) = [r.getMessage() for r in caplog.records if "once the client was gone" in r.getMessage()]
    assert "WebSocketDisconnect" in line


async def test_a_denial_response_refuses_the_handshake_with_its_status_and_body(
    server: WebSocketServer,
) -> None:
    with pytest.raises(HandshakeRejected) as refused:
        async with open_websocket("127.0.0.1", server.port, "/guarded"):
            pass
    assert refused.value.status == 401
    assert refused.value.body == b"no token, no entry"
    assert refused.value.headers is not None
    assert refused.value.headers.getlist("content-type") == ["text/plain; charset=utf-8"]
    async with open_websocket("127.0.0.1", server.port, "/guarded?token=secret") as ws:
        assert await ws.receive_text() == "welcome"
        with pytest.raises(Exception) as closed:
            await ws.receive_text()
    assert getattr(closed.value, "code", None) == 4003


async def test_an_upgrade_after_plain_requests_on_one_connection(server: WebSocketServer) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.send_all(b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b"}"):
            answer += await stream.receive_some()
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        await stream.send_all(
            b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += await stream.receive_some()
        assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        assert b"hello /echo" in head or b"hello /echo" in await stream.receive_some()


async def test_shutdown_closes_websockets_with_1001_before_the_lifespan_shutdown() -> None:
    EVENTS.clear()
    serving = trio.CancelScope()

    async def serve(task_status: trio.TaskStatus[WebSocketServer]) -> None:
        with serving:
            await serve_asgi(app, "127.0.0.1", 0, task_status=task_status)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve)
        async with connect(f"ws://127.0.0.1:{server.port}/echo") as ws:
            assert await ws.recv() == "hello /echo"
            serving.cancel()
            with pytest.raises(websockets.exceptions.ConnectionClosedOK):
                await ws.recv()
            assert ws.close_code == 1001
        await seen("shutdown")
    assert EVENTS == ["startup", "disconnect 1001", "shutdown"]


async def test_https_and_wss_on_one_port(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async with open_asgi_server(app, "127.0.0.1", 0, ssl_context=server_context) as server:
        async with httpx.AsyncClient(verify=client_context) as client:
            page = (await client.get(f"https://localhost:{server.port}/page")).json()
        async with connect(f"wss://localhost:{server.port}/echo", ssl=client_context) as ws:
            assert await ws.recv() == "hello /echo"
            await ws.send("secure")
            assert await ws.recv() == "secure"
    assert page["scheme"] == "https"


async def test_a_trio_ws_router_mounted_in_starlette_on_serve_asgi() -> None:
    router = Router()

    @router.websocket("/room/{name}")
    async def room(ws: TrioWebSocket, name: str) -> None:
        await ws.accept()
        assert ws.request is not None
        await ws.send_text(f"{name} {ws.request.root_path} {ws.request.route_path}")
        async for text in ws.iter_text():
            await ws.send_text(text)

    mounted = Starlette(routes=[Route("/page", page), Mount("/ws", app=as_asgi(router))], lifespan=lifespan)
    async with open_asgi_server(mounted, "127.0.0.1", 0) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/ws/room/lobby") as ws:
            assert await ws.recv() == "lobby /ws /room/lobby"
            await ws.send("through both")
            assert await ws.recv() == "through both"
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{server.port}/page")).json()["greeting"] == "hello"
