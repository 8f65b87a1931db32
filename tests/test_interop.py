"""Independent peers: the websockets library's clients and server, and trio-websocket's client."""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus

import pytest
import trio
import trio_websocket
import websockets.asyncio.server as ws_server
import websockets.exceptions
import websockets.sync.client as ws_sync
from helpers import websockets_asyncio_server
from websockets.http11 import Request, Response

from trio_ws import (
    HandshakeRejected,
    WebSocket,
    WebSocketClose,
    open_websocket_server,
    open_websocket_url,
)


async def echo(ws: WebSocket) -> None:
    await ws.accept(
        subprotocol="chat"
        if "chat" in ((ws.request and ws.request.headers.get("sec-websocket-protocol", "")) or "")
        else None
    )
    async for message in ws.iter_text():
        if message == "close-4001":
            raise WebSocketClose(4001, "asked for it")
        await ws.send_text(message)


async def test_websockets_sync_client_handshake_echo_and_close_code() -> None:
    async with open_websocket_server(echo, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.port}/echo"

        def client() -> tuple[str, str | None, int | None]:
            with ws_sync.connect(url, subprotocols=["chat"]) as conn:  # type: ignore[list-item]
                conn.send("héllo")
                reply = str(conn.recv(timeout=5))
                conn.send("close-4001")
                with pytest.raises(websockets.exceptions.ConnectionClosedError):
                    conn.recv(timeout=5)
                assert conn.close_code is not None
                return reply, conn.subprotocol, conn.close_code

        reply, subprotocol, code = await trio.to_thread.run_sync(client)
    assert reply == "héllo"
    assert subprotocol == "chat"
    assert code == 4001


async def test_websockets_client_large_and_fragmented_messages() -> None:
    async def bytes_echo(ws: WebSocket) -> None:
        await ws.accept()
        data = await ws.receive_bytes()
        await ws.send_fragments([data[:10], data[10:]])
        text = await ws.receive_text()
        await ws.send_text(text)

    async with open_websocket_server(bytes_echo, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.port}/"

        def client() -> None:
            with ws_sync.connect(url, max_size=None) as conn:
                payload = bytes(range(256)) * 2000
                conn.send(payload)
                assert conn.recv(timeout=5) == payload
                conn.send(iter(["frag", "mented"]))  # a fragmented text message
                assert conn.recv(timeout=5) == "fragmented"

        await trio.to_thread.run_sync(client)


async def test_extra_response_headers_reach_the_websockets_client() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept(headers=[("Set-Cookie", "session=abc; HttpOnly")])
        await ws.send_text("hello")

    async with open_websocket_server(handler, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.port}/"

        def client() -> tuple[str, str]:
            with ws_sync.connect(url) as conn:
                assert conn.response is not None
                return conn.response.headers["Set-Cookie"], conn.response.headers["Server"]

        assert await trio.to_thread.run_sync(client) == ("session=abc; HttpOnly", "trio_ws")


async def test_websockets_client_sees_handshake_refusal() -> None:
    async def refuse(ws: WebSocket) -> None:
        await ws.reject(404, "no such room")

    async with open_websocket_server(refuse, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.port}/"

        def client() -> int:
            with pytest.raises(websockets.exceptions.InvalidStatus) as info:
                ws_sync.connect(url)
            return info.value.response.status_code

        assert await trio.to_thread.run_sync(client) == 404


async def test_trio_websocket_client() -> None:
    async with (
        open_websocket_server(echo, "127.0.0.1", 0) as server,
        trio_websocket.open_websocket("127.0.0.1", server.port, "/", use_ssl=False) as conn,
    ):
        await conn.send_message("from trio-websocket")
        assert await conn.get_message() == "from trio-websocket"
        await conn.ping(b"abcd")


@pytest.fixture
def websockets_server() -> Iterator[int]:
    """The websockets library's asyncio echo server, in a thread."""
    with websockets_asyncio_server(subprotocols=["chat"]) as port:
        yield port


async def test_our_client_against_websockets_server(websockets_server: int) -> None:
    url = f"ws://127.0.0.1:{websockets_server}/x?y=1"
    async with open_websocket_url(url, subprotocols=["chat"]) as ws:
        assert ws.subprotocol == "chat"
        await ws.send_text("hi")
        assert await ws.receive_text() == "hi"
        await ws.send_bytes(b"\x00" * 100000)
        assert await ws.receive_bytes() == b"\x00" * 100000
        assert await ws.ping() >= 0
    assert ws.close_code == 1000


@pytest.fixture
def refusing_websockets_server() -> Iterator[int]:
    """The websockets library's asyncio server, refusing every handshake with 403."""

    def refuse(conn: ws_server.ServerConnection, request: Request) -> Response:
        return conn.respond(HTTPStatus.FORBIDDEN, "not here\n")

    with websockets_asyncio_server(process_request=refuse) as port:
        yield port


async def test_our_client_refused_by_websockets_server(refusing_websockets_server: int) -> None:
    with pytest.raises(HandshakeRejected) as info:
        async with open_websocket_url(f"ws://127.0.0.1:{refusing_websockets_server}/"):
            pass  # pragma: no cover
    assert info.value.status == 403
    assert info.value.body == b"not here\n"
