"""What code written for Starlette and ASGI looks for on a connection — ``ws.state``, ``async for
message in ws``, ``ws.scope`` — the socket addresses of both ends, and the other names of two close
codes."""

from __future__ import annotations

import copy
import ssl
from typing import Any

import pytest
import trio
import trio.testing
import trustme

from trio_ws import (
    CloseCode,
    Router,
    State,
    WebSocket,
    WebSocketDisconnect,
    WebSocketOptions,
    open_websocket,
    open_websocket_server,
    open_websocket_url,
)
from trio_ws.protocol import Role
from trio_ws.testing import open_test_client

# ------------------------------------------------------------- close codes


def test_close_code_aliases_are_the_same_members() -> None:
    # (mypy takes an alias for a member of its own: read them as plain CloseCode values)
    aliases: dict[str, CloseCode] = {"normal": CloseCode.NORMAL, "no status": CloseCode.NO_STATUS_RECEIVED}
    assert aliases["normal"] is CloseCode.NORMAL_CLOSURE
    assert aliases["no status"] is CloseCode.NO_STATUS_RCVD
    assert (aliases["normal"], aliases["no status"]) == (1000, 1005)
    assert CloseCode["NORMAL"] is CloseCode(1000)
    assert CloseCode(1000).name == "NORMAL_CLOSURE"  # today's names stay the members' names
    assert CloseCode(1005).name == "NO_STATUS_RCVD"
    assert len(list(CloseCode)) == 16  # an alias is not a new member


# ------------------------------------------------------------------- state


def test_state_sets_gets_and_deletes_attributes() -> None:
    state = State({"a": 1})
    state.b = "two"
    assert (state.a, state.b) == (1, "two")
    assert vars(state) == {"a": 1, "b": "two"}
    del state.a
    assert not hasattr(state, "a")
    assert repr(state) == "State({'b': 'two'})"
    with pytest.raises(AttributeError, match="the state has no attribute 'missing': set it first"):
        _ = state.missing
    with pytest.raises(AttributeError, match="no attribute 'a' to delete"):
        del state.a
    assert copy.copy(state).b == "two"


async def test_ws_state_is_one_namespace_per_connection() -> None:
    seen: list[Any] = []

    async def handler(ws: WebSocket) -> None:
        assert ws.state is ws.state
        try:
            _ = ws.state.visits
        except AttributeError as exc:
            seen.append(str(exc))
        ws.state.visits = 1
        await ws.accept()
        ws.state.visits += 1
        seen.append(ws.state.visits)

    for _ in range(2):  # a new connection starts with an empty state
        async with open_test_client(handler) as client:
            assert await client.wait_closed(timeout=5) == CloseCode.NORMAL_CLOSURE
    assert (
        seen
        == [
            "the state has no attribute 'visits': set it first (state.visits = ...)",
            2,
        ]
        * 2
    )


# --------------------------------------------------------------- async for


async def test_async_for_over_a_connection_yields_text_and_bytes_until_a_normal_close() -> None:
    seen: list[object] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        async for message in ws:
            seen.append(message)
        seen.append("ended")

    async with open_test_client(handler) as client:
        await client.send_text("text")
        await client.send_bytes(b"\x00bytes")
        await client.send_text("")
    assert seen == ["text", b"\x00bytes", "", "ended"]


async def test_async_for_over_a_connection_raises_on_another_close_code() -> None:
    seen: list[object] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            async for message in ws:
                seen.append(message)
        except WebSocketDisconnect as exc:
            seen.append((exc.code, exc.reason))

    async with open_test_client(handler) as client:
        await client.send_text("a")
        await client.close(4000, "bye")
    assert seen == ["a", (4000, "bye")]


# ------------------------------------------------------------------- scope


async def test_scope_is_an_asgi_websocket_scope() -> None:
    scopes: list[Any] = []
    router = Router()

    @router.websocket("/chat/{room}")
    async def chat(ws: WebSocket, room: str) -> None:
        scopes.append(ws.scope)
        await ws.accept(subprotocol="chat")

    async with open_test_client(
        router,
        "/chat/caf%C3%A9",
        query_string="a=1&b=%20x",
        headers=[("X-Token", "t"), ("X-Token", "u")],
        subprotocols=["chat", "other"],
    ):
        pass
    (scope,) = scopes
    assert scope["type"] == "websocket"
    assert scope["asgi"]["version"] == "3.0"
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/chat/café"
    assert scope["raw_path"] == b"/chat/caf%C3%A9"
    assert scope["root_path"] == ""
    assert scope["query_string"] == b"a=1&b=%20x"
    headers = scope["headers"]
    assert all(isinstance(n, bytes) and isinstance(v, bytes) and n == n.lower() for n, v in headers)
    assert [v for n, v in headers if n == b"x-token"] == [b"t", b"u"]
    assert (b"host", b"testserver") in headers
    assert scope["client"] is None and scope["server"] is None  # memory streams: no socket
    assert scope["subprotocols"] == ["chat", "other"]
    assert scope["path_params"] == {"room": "café"}
    with pytest.raises(TypeError):
        scope["type"] = "http"


async def test_scope_over_tcp_names_the_client_and_the_server() -> None:
    scopes: list[Any] = []

    async def handler(ws: WebSocket) -> None:
        scopes.append((ws.scope, ws.client))
        await ws.accept()

    async with (
        open_websocket_server(handler, "127.0.0.1", 0) as server,
        open_websocket("127.0.0.1", server.port, "/x?y=1") as ws,
    ):
        client_address = ws.local_address  # (read while the socket is open)
        with pytest.raises(WebSocketDisconnect):
            await ws.receive()
    ((scope, client),) = scopes
    assert scope["server"] == ("127.0.0.1", server.port)
    assert scope["client"] == client == client_address
    assert (scope["path"], scope["query_string"]) == ("/x", b"y=1")


async def test_scope_without_a_request_is_a_runtime_error() -> None:
    _, server_stream = trio.testing.memory_stream_pair()
    ws = WebSocket(server_stream, Role.SERVER, WebSocketOptions())
    with pytest.raises(RuntimeError, match="no request"):
        _ = ws.scope


# --------------------------------------------------------------- addresses


async def test_local_and_remote_addresses_on_both_ends_over_tcp() -> None:
    seen: list[Any] = []

    async def handler(ws: WebSocket) -> None:
        seen.append((ws.local_address, ws.remote_address))
        await ws.accept()
        await ws.receive()

    async with open_websocket_server(handler, "127.0.0.1", 0) as server:
        async with open_websocket("127.0.0.1", server.port, "/") as ws:
            client_side = (ws.local_address, ws.remote_address)
            await ws.send_text("done")
        assert ws.local_address == client_side[0]  # kept once read, after the socket closed too
    ((server_local, server_remote),) = seen
    assert server_local == ("127.0.0.1", server.port)
    assert client_side[1] == ("127.0.0.1", server.port)
    assert server_remote == client_side[0]
    assert server_remote[0] == "127.0.0.1" and server_remote[1] != server.port


async def test_remote_address_is_the_socket_peer_behind_a_trusted_proxy() -> None:
    seen: list[Any] = []

    async def handler(ws: WebSocket) -> None:
        seen.append((ws.client, ws.remote_address))
        await ws.accept()

    async with open_websocket_server(handler, "127.0.0.1", 0, trusted_proxies=["127.0.0.1"]) as server:
        headers = [("X-Forwarded-For", "203.0.113.7")]
        async with open_websocket("127.0.0.1", server.port, "/", headers=headers) as ws:
            peer = ws.local_address
            with pytest.raises(WebSocketDisconnect):
                await ws.receive()
    ((client, remote),) = seen
    assert client == ("203.0.113.7", 0)  # who the proxy says
    assert remote == peer  # the socket's own peer


async def test_addresses_are_none_without_a_socket() -> None:
    seen: list[Any] = []

    async def handler(ws: WebSocket) -> None:
        seen.append((ws.local_address, ws.remote_address))
        await ws.accept()

    async with open_test_client(handler) as client:
        assert (client.ws.local_address, client.ws.remote_address) == (None, None)
    assert seen == [(None, None)]


async def test_addresses_under_tls_are_those_of_the_tcp_stream() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    seen: list[Any] = []

    async def handler(ws: WebSocket) -> None:
        seen.append((ws.local_address, ws.remote_address))
        await ws.accept()

    async with open_websocket_server(handler, "127.0.0.1", 0, ssl_context=server_context) as server:
        url = f"wss://localhost:{server.port}/"
        async with open_websocket_url(url, ssl_context=client_context) as ws:
            assert isinstance(ws.stream, trio.SSLStream)
            assert ws.remote_address[1] == server.port
            client_local = ws.local_address
    assert seen[0][0][1] == server.port
    assert seen[0][1] == client_local
