"""What a handler sees of the request: URL and parts, headers, query parameters, cookies, client,
subprotocols and extensions; through the test client and over TCP with the websockets library."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import websockets.sync.client as ws_sync

from trio_ws import URL, QueryParams, WebSocket, open_websocket, open_websocket_server
from trio_ws.testing import open_test_client


async def describe(ws: WebSocket) -> None:
    """Send back everything about the request, before accepting and after."""
    assert ws.request is not None
    offered = ws.request.subprotocols
    before: dict[str, Any] = {
        "url": ws.url,
        "path": ws.path,
        "url.path": ws.url.path,
        "port": ws.url.port,
        "scheme": ws.url.scheme,
        "hostname": ws.url.hostname,
        "query": ws.url.query,
        "is_secure": ws.url.is_secure,
        "add": ws.query_params.get("add"),
        "sub": ws.query_params.get("sub"),
        "sub_all": ws.query_params.getlist("sub"),
        "missing": ws.query_params.getlist("missing"),
        "blank": ws.query_params.get("blank"),
        "spaced": ws.query_params.get("spaced"),
        "pct": ws.query_params.get("pct"),
        "version": ws.headers["sec-websocket-version"],
        "Version": ws.headers["Sec-WebSocket-Version"],
        "x_multi": ws.headers.getlist("x-multi"),
        "raw_names": [name.decode() for name, _ in ws.headers.raw if name.lower().startswith(b"x-")],
        "cookies": ws.cookies,
        "client": ws.client,
        "subprotocols": offered,
        "offered_extensions": ws.request.extensions,
    }
    await ws.accept(subprotocol=offered[0] if offered else None)
    before["negotiated"] = ws.extensions
    before["subprotocol"] = ws.subprotocol
    await ws.send_text(json.dumps(before))


QUERY = "add=1&sub=2&sub=3&blank=&spaced=a+b%20c&pct=%C3%A9%26%3D"
HEADERS = [
    ("X-Multi", "one"),
    ("x-multi", "two"),
    ("Cookie", 'sessionid=abc123; theme="dark"; bad; empty=; enc=a%20b'),
]


def check_common(seen: dict[str, Any]) -> None:
    assert seen["path"] == "/chatroom"
    assert seen["url.path"] == "/chatroom"
    assert seen["query"] == QUERY
    assert seen["scheme"] == "ws"
    assert seen["is_secure"] is False
    assert (seen["add"], seen["sub"], seen["sub_all"], seen["missing"]) == ("1", "2", ["2", "3"], [])
    assert (seen["blank"], seen["spaced"], seen["pct"]) == ("", "a b c", "é&=")
    assert seen["version"] == seen["Version"] == "13"
    assert seen["x_multi"] == ["one", "two"]
    assert seen["raw_names"] == ["X-Multi", "x-multi"]  # raw: as sent, case kept
    assert seen["cookies"] == {"sessionid": "abc123", "theme": "dark", "empty": "", "enc": "a b"}
    assert seen["subprotocols"] == ["chat.v2", "chat.v1"]
    assert seen["subprotocol"] == "chat.v2"


async def test_request_through_the_test_client() -> None:
    async with open_test_client(
        describe, "/chatroom", query_string=QUERY, headers=HEADERS, subprotocols=["chat.v2", "chat.v1"]
    ) as client:
        seen = json.loads(await client.receive_text())
    check_common(seen)
    assert seen["url"] == f"ws://testserver/chatroom?{QUERY}"
    assert (seen["hostname"], seen["port"]) == ("testserver", None)
    assert seen["client"] is None  # not a socket
    assert seen["offered_extensions"][0].startswith("permessage-deflate")
    assert seen["negotiated"] == ["permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"]


async def test_request_over_tcp_from_our_client() -> None:
    async with (
        open_websocket_server(describe, "127.0.0.1", 0) as server,
        open_websocket(
            "127.0.0.1",
            server.port,
            f"/chatroom?{QUERY}",
            headers=HEADERS,
            subprotocols=["chat.v2", "chat.v1"],
            compression=None,
        ) as ws,
    ):
        seen = json.loads(await ws.receive_text())
        local_port = ws.stream.socket.getsockname()[1]  # type: ignore[attr-defined]
    check_common(seen)
    assert seen["url"] == f"ws://127.0.0.1:{server.port}/chatroom?{QUERY}"
    assert (seen["hostname"], seen["port"]) == ("127.0.0.1", server.port)
    assert seen["client"] == ["127.0.0.1", local_port]
    assert seen["offered_extensions"] == []
    assert seen["negotiated"] == []


async def test_request_over_tcp_from_the_websockets_client() -> None:
    async with open_websocket_server(describe, "127.0.0.1", 0) as server:
        url = f"ws://localhost:{server.port}/chatroom?{QUERY}"

        def client() -> dict[str, Any]:
            with ws_sync.connect(
                url,
                additional_headers=HEADERS,
                subprotocols=["chat.v2", "chat.v1"],  # type: ignore[list-item]
            ) as conn:
                return json.loads(str(conn.recv(timeout=5)))  # type: ignore[no-any-return]

        seen = await trio.to_thread.run_sync(client)
    check_common(seen)
    assert seen["url"] == url  # the Host header the client sent
    assert (seen["hostname"], seen["port"]) == ("localhost", server.port)
    assert seen["client"][0] == "127.0.0.1"
    assert seen["negotiated"] == ["permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"]


def test_url_parts() -> None:
    url = URL("wss://Example.COM:8443/a%20b/c?x=1&y=2")
    assert url == "wss://Example.COM:8443/a%20b/c?x=1&y=2"
    assert isinstance(url, str)
    assert (url.scheme, url.hostname, url.port, url.netloc) == (
        "wss",
        "example.com",
        8443,
        "Example.COM:8443",
    )
    assert (url.path, url.query, url.is_secure) == ("/a%20b/c", "x=1&y=2", True)
    assert URL("ws://[::1]:9000/").hostname == "::1"
    assert URL("ws://host:notaport/").port is None
    assert repr(URL("ws://h/")) == "URL('ws://h/')"
    broken = URL("ws://[::1/p?q=1")  # a malformed Host header must not make the URL unreadable
    assert (broken.hostname, broken.path, broken.query) == (None, "/p", "q=1")


def test_query_params_are_an_immutable_multidict() -> None:
    params = QueryParams("a=1&b=2&a=3&c")
    assert params["a"] == "1"
    assert params.getlist("a") == ["1", "3"]
    assert params["c"] == ""
    assert list(params) == ["a", "b", "c"]
    assert len(params) == 3
    assert "b" in params
    assert "z" not in params
    assert params.get("z", "default") == "default"
    assert params.multi_items() == [("a", "1"), ("b", "2"), ("a", "3"), ("c", "")]
    assert params == QueryParams([("a", "1"), ("b", "2"), ("a", "3"), ("c", "")])
    assert hash(params) == hash(QueryParams("a=1&b=2&a=3&c"))
    with pytest.raises(TypeError):
        params["a"] = "x"  # type: ignore[index]
    with pytest.raises(KeyError):
        params["z"]
