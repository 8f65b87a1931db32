"""What the client sends and what it keeps: headers the handshake owns are refused before
connecting, ``ws.response`` is the server's 101, ``User-Agent`` and ``Origin``."""

from __future__ import annotations

import re

import pytest
import trio
import trio.testing

from trio_ws import WebSocket, WebSocketOptions, open_websocket, open_websocket_server, open_websocket_url
from trio_ws.client import USER_AGENT, connect_websocket
from trio_ws.protocol import ResponseHead, build_request

OWNED = [
    "Host",
    "host",
    "HOST",
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Key",
    "sec-websocket-version",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
]


async def report_headers(ws: WebSocket) -> None:
    """Accept and send back the request's headers, as ``name: value`` lines."""
    await ws.accept()
    lines = (f"{name.decode()}: {value.decode()}" for name, value in ws.headers.raw)
    await ws.send_text("\n".join(lines))


async def received_headers(ws: WebSocket) -> list[tuple[str, str]]:
    lines = (await ws.receive_text()).split("\n")
    return [(name.lower(), value) for name, _, value in (line.partition(": ") for line in lines)]


@pytest.mark.parametrize("name", ["Host", "host"])
async def test_a_second_host_header_is_refused_before_connecting(name: str) -> None:
    handled: list[WebSocket] = []

    async def handler(ws: WebSocket) -> None:
        handled.append(ws)  # pragma: no cover - the request must never be sent
        await ws.accept()  # pragma: no cover

    async with open_websocket_server(handler, "127.0.0.1", 0) as server:
        with pytest.raises(ValueError, match=f"cannot pass a {name} header"):
            async with open_websocket("127.0.0.1", server.port, headers=[(name, "other.example")]):
                pass  # pragma: no cover
        url = f"ws://127.0.0.1:{server.port}/"
        with pytest.raises(ValueError, match="Host"):
            async with open_websocket_url(url, headers=[("X-Fine", "1"), ("Host", "evil.example")]):
                pass  # pragma: no cover
    assert handled == []


async def test_no_connection_is_attempted_for_a_refused_header() -> None:
    # Port 1 on the loopback is closed: connecting first would raise ConnectionRefusedError.
    with pytest.raises(ValueError, match="Host"):
        async with open_websocket("127.0.0.1", 1, headers=[("Host", "x")]):
            pass  # pragma: no cover


@pytest.mark.parametrize("name", OWNED)
async def test_every_header_the_handshake_writes_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="cannot pass a"):
        build_request("example.com", "/", headers=[(name, "x")])
    with pytest.raises(ValueError, match="cannot pass a"):
        build_request("example.com", "/", headers=[(name.encode(), b"x")])
    client, _ = trio.testing.memory_stream_pair()
    with pytest.raises(ValueError, match="cannot pass a"):
        await connect_websocket(client, "example.com", "/", WebSocketOptions(), headers=[(name, "x")])
    with pytest.raises(ValueError, match="cannot pass a"):
        async with open_websocket("127.0.0.1", 1, headers=[(name, "x")]):
            pass  # pragma: no cover


def test_the_refusal_says_what_to_use_instead() -> None:
    with pytest.raises(ValueError, match="subprotocols="):
        build_request("h", "/", headers=[("Sec-WebSocket-Protocol", "chat")])
    with pytest.raises(ValueError, match="compression="):
        build_request("h", "/", headers=[("Sec-WebSocket-Extensions", "permessage-deflate")])
    data, _ = build_request("h", "/", headers=[("X-Host", "a"), ("Hostname", "b")])  # other names pass
    assert b"\r\nX-Host: a\r\nHostname: b\r\n" in data


async def test_ws_response_is_the_servers_101() -> None:
    server_side: list[ResponseHead | None] = []

    async def handler(ws: WebSocket) -> None:
        server_side.append(ws.response)
        await ws.accept(headers=[("X-Served-By", "node-7")])
        await ws.send_text("hi")

    async with (
        open_websocket_server(handler, "127.0.0.1", 0) as server,
        open_websocket("127.0.0.1", server.port) as ws,
    ):
        assert await ws.receive_text() == "hi"
        response = ws.response
        assert isinstance(response, ResponseHead)
        assert (response.status, response.reason) == (101, "Switching Protocols")
        assert response.headers["x-served-by"] == "node-7"
        assert response.headers["server"] == "trio_ws"
        assert response.headers["upgrade"].lower() == "websocket"
        assert ws.request is not None and ws.request.response is response
    assert server_side == [None]


async def test_the_default_user_agent_names_trio_ws_and_python() -> None:
    assert re.fullmatch(r"trio_ws/\S+ Python/3\.\d+", USER_AGENT)
    async with (
        open_websocket_server(report_headers, "127.0.0.1", 0) as server,
        open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws,
    ):
        headers = await received_headers(ws)
        assert [v for n, v in headers if n == "user-agent"] == [USER_AGENT]
        assert [v for n, v in headers if n == "host"] == [f"127.0.0.1:{server.port}"]
        assert "origin" not in dict(headers)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"user_agent": "feed-reader/2.1"}, ["feed-reader/2.1"]),
        ({"user_agent": None}, []),
        ({"headers": [("user-agent", "mine/1")]}, ["mine/1"]),  # headers= wins, one header only
        ({"user_agent": "ignored/1", "headers": [("User-Agent", "mine/1")]}, ["mine/1"]),
    ],
)
async def test_the_user_agent_can_be_changed_or_left_out(
    kwargs: dict[str, object], expected: list[str]
) -> None:
    async with (
        open_websocket_server(report_headers, "127.0.0.1", 0) as server,
        open_websocket("127.0.0.1", server.port, **kwargs) as ws,  # type: ignore[arg-type]
    ):
        headers = await received_headers(ws)
        assert [v for n, v in headers if n == "user-agent"] == expected


async def test_origin_sends_an_origin_header_a_policy_can_check() -> None:
    origins = ["https://app.example.com"]
    async with open_websocket_server(report_headers, "127.0.0.1", 0, origins=origins) as server:
        url = f"ws://127.0.0.1:{server.port}/"
        async with open_websocket_url(url, origin="https://app.example.com") as ws:
            headers = await received_headers(ws)
            assert [v for n, v in headers if n == "origin"] == ["https://app.example.com"]
        with pytest.raises(ValueError, match="Origin"):
            async with open_websocket_url(
                url, origin="https://a.test", headers=[("Origin", "https://b.test")]
            ):
                pass  # pragma: no cover
