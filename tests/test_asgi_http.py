"""The HTTP side of ``serve_asgi`` byte by byte: the http scope and events, keep-alive, pipelining,
HEAD, ``Expect: 100-continue``, bad requests and the limits (400, 408, 413, 431: one log line, no
traceback), an application that fails, and shutdown with responses under way."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from trio_ws import HandshakeRejected, HTTPResponse, Request, WebSocketServer, open_websocket
from trio_ws.asgi import Receive, Scope, Send, open_asgi_server

SCOPES: list[Scope] = []
RELEASE: list[trio.Event] = []  # lets /slow finish
WAITING: list[trio.Event] = []  # set when /disconnect waits for the client to go


async def read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        body += bytes(message["body"])
        if not message.get("more_body", False):
            return body


async def respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        raise RuntimeError("no lifespan here")
    SCOPES.append(scope)
    path = scope["path"]
    if scope["type"] == "websocket":
        await receive()  # websocket.connect; then returning without accepting refuses (403)
    elif path == "/echo":
        body = await read_body(receive)
        await respond(send, 200, body, [(b"content-type", b"application/octet-stream")])
    elif path == "/fail-before":
        raise KeyError("before the response")
    elif path == "/fail-after":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise KeyError("in the middle of the response")
    elif path == "/nothing":
        return
    elif path == "/slow":  # a response under way until the test lets it finish
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first ", "more_body": True})
        await RELEASE[0].wait()
        await send({"type": "http.response.body", "body": b"last"})
    elif path == "/disconnect":
        await read_body(receive)
        WAITING[0].set()
        SCOPES.append({"disconnect": await receive()})
    else:
        await respond(send, 200, f"{scope['method']} {path}".encode())


@asynccontextmanager
async def serving(**settings: Any) -> AsyncIterator[WebSocketServer]:
    SCOPES.clear()
    RELEASE[:] = [trio.Event()]
    WAITING[:] = [trio.Event()]
    async with open_asgi_server(app, "127.0.0.1", 0, **settings) as server:
        yield server


async def exchange(port: int, data: bytes, *, until_closed: bool = True) -> bytes:
    """Send ``data``; everything the server answers until it closes the connection."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        answer = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some():
                answer += chunk
    return answer


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.exc_info]


GET = b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n"
LAST = b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


async def test_the_http_scope() -> None:
    async with serving(root_path="/api") as server:
        answer = await exchange(
            server.port,
            b"GET /caf%C3%A9/x?q=1&r=%20 HTTP/1.1\r\nHost: h\r\nX-Thing: A\r\nConnection: close\r\n\r\n",
        )
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    (scope,) = SCOPES
    assert scope["type"] == "http"
    assert scope["asgi"]["version"] == "3.0"
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/café/x"
    assert scope["raw_path"] == b"/api/caf%C3%A9/x"
    assert scope["query_string"] == b"q=1&r=%20"
    assert (b"x-thing", b"A") in scope["headers"]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ("127.0.0.1", server.port)
    assert scope["state"] == {}


async def test_the_websocket_scope() -> None:
    async with serving(root_path="/api/", trusted_proxies=["127.0.0.1"]) as server:
        with pytest.raises(HandshakeRejected):  # (the application refuses: 403)
            async with open_websocket(
                "127.0.0.1",
                server.port,
                "/caf%C3%A9/x?q=1",
                subprotocols=["one", "two"],
                headers=[("X-Thing", "A"), ("X-Forwarded-Proto", "https")],
            ):
                pass
    (scope,) = SCOPES
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "wss"  # (what the trusted proxy says)
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/café/x"
    assert scope["raw_path"] == b"/api/caf%C3%A9/x"
    assert scope["query_string"] == b"q=1"
    assert (b"x-thing", b"A") in scope["headers"]
    assert all(name == name.lower() for name, _ in scope["headers"])
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ("127.0.0.1", server.port)
    assert scope["subprotocols"] == ["one", "two"]
    assert scope["state"] == {}
    assert scope["extensions"] == {"websocket.http.response": {}}


async def test_keep_alive_and_pipelined_requests_are_answered_in_order() -> None:
    async with serving() as server:
        answer = await exchange(
            server.port, GET + b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" + LAST
        )
    assert answer.count(b"HTTP/1.1 200 OK\r\n") == 3
    first, second, third = answer.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert first.endswith(b"GET /page") and second.endswith(b"hello") and third.endswith(b"GET /last")
    assert b"content-length: 5\r\n" in second.lower()
    assert b"connection: close" in third.lower()


async def test_a_chunked_body_and_expect_100_continue() -> None:
    request = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n"
        b"Connection: close\r\n\r\n"
    )
    async with serving() as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(request)
            interim = await stream.receive_some()
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"  # (the body only after it)
            await stream.send_all(b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
            answer = b""
            while chunk := await stream.receive_some():
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\nabcdefg")


async def test_head_gets_the_head_of_a_get() -> None:
    async with serving() as server:
        answer = await exchange(server.port, b"HEAD /page HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-length: 10\r\n" in head.lower() + b"\r\n"  # (the length of the app's body)
    assert body == b""


async def test_an_upgrade_request_after_a_plain_one_reaches_the_websocket_side() -> None:
    upgrade = (
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    async with serving() as server:
        answer = await exchange(server.port, GET + upgrade)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    # The application (an HTTP-only one) did not accept: the WebSocket side refused with 403.
    assert b"HTTP/1.1 403 Forbidden\r\n" in answer
    assert SCOPES[-1]["type"] == "websocket"
    assert SCOPES[-1]["path"] == "/ws"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\nNONSENSE\x00\r\n\r\n", 400),  # the second request, h11's verdict
        (GET + b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
        (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n", 413),
        (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n" + b"a" * 2000, 413),
        (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"BAD\r\n\r\n", 400),  # the first request: the server's own parser
    ],
    ids=[
        "malformed",
        "head-too-large",
        "body-too-large",
        "chunked-too-large",
        "bad-chunk",
        "first-malformed",
    ],
)
async def test_bad_requests_get_their_status_and_no_traceback(
    request_bytes: bytes, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_ws")
    async with serving(max_body_size=1000, max_request_size=8192) as server:
        answer = await exchange(server.port, request_bytes)
    assert answer.rpartition(b"HTTP/1.1 ")[2].startswith(f"{status} ".encode()), answer[:300]
    assert b"connection: close" in answer.rpartition(b"HTTP/1.1 ")[2].lower()
    assert tracebacks(caplog) == []


async def test_the_application_failing_is_500_before_the_response_and_a_drop_after(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving() as server:
        before = await exchange(server.port, b"GET /fail-before HTTP/1.1\r\nHost: x\r\n\r\n")
        after = await exchange(server.port, b"GET /fail-after HTTP/1.1\r\nHost: x\r\n\r\n")
        nothing = await exchange(server.port, b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
    assert before.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert after.startswith(b"HTTP/1.1 200 OK\r\n")
    assert after.endswith(b"4\r\npart\r\n")  # cut off: no last chunk
    assert nothing.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    failures = tracebacks(caplog)
    assert [record.getMessage() for record in failures] == [
        "ASGI application failed for GET /fail-before",
        "ASGI application failed for GET /fail-after",
    ]


async def test_http_disconnect_when_the_client_goes_away_while_the_app_waits() -> None:
    async with serving() as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        await stream.send_all(b"GET /disconnect HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(5):
            await WAITING[0].wait()
        await stream.aclose()
    assert SCOPES[-1] == {"disconnect": {"type": "http.disconnect"}}


async def test_process_request_sees_http_requests_first() -> None:
    async def health(request: Request) -> HTTPResponse | None:
        await trio.lowlevel.checkpoint()
        return HTTPResponse(200, "healthy\n") if request.path == "/health" else None

    async with serving(process_request=health) as server:
        health_answer = await exchange(server.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        page = await exchange(server.port, LAST)
    assert health_answer.endswith(b"\r\n\r\nhealthy\n")
    assert page.endswith(b"GET /last")
    assert [scope["path"] for scope in SCOPES] == ["/last"]


async def test_trusted_proxies_set_the_client_and_the_scheme() -> None:
    forwarded = (
        b"GET /last HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n"
        b"Connection: close\r\n\r\n"
    )
    async with serving(trusted_proxies=["127.0.0.1"]) as server:
        await exchange(server.port, forwarded)
    assert SCOPES[0]["client"] == ("203.0.113.9", 0)
    assert SCOPES[0]["scheme"] == "https"


# ------------------------------------------------------------------------------------- timeouts


@asynccontextmanager
async def over_memory(**settings: Any) -> AsyncIterator[trio.abc.Stream]:
    """A connection to an ASGI server over memory streams (no socket: the clock is the test's)."""
    SCOPES.clear()
    async with open_asgi_server(app, listeners=[], **settings) as server, trio.open_nursery() as nursery:
        client, server_side = trio.testing.memory_stream_pair()
        nursery.start_soon(server.serve_stream, server_side)
        yield client


async def read_to_end(stream: trio.abc.ReceiveStream) -> bytes:
    answer = b""
    while chunk := await stream.receive_some():
        answer += chunk
    return answer


async def test_a_slow_first_request_head_gets_408(autojump_clock: trio.testing.MockClock) -> None:
    async with over_memory(open_timeout=3) as client:
        await client.send_all(b"GET / HTTP/1.1\r\nHo")
        start = trio.current_time()
        answer = await client.receive_some()
        assert trio.current_time() - start == pytest.approx(3)
        answer += await read_to_end(client)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")


async def test_a_slow_later_request_head_gets_408(autojump_clock: trio.testing.MockClock) -> None:
    async with over_memory(open_timeout=3, keep_alive_timeout=100) as client:
        await client.send_all(GET)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        await client.send_all(b"GET / HTTP/1.1\r\nHo")
        answer = await read_to_end(client)
        assert trio.current_time() - start == pytest.approx(3)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.partition(b"GET /page")[2].startswith(b"HTTP/1.1 408 Request Timeout\r\n")


async def test_an_idle_keep_alive_connection_closes_after_the_keep_alive_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with over_memory(keep_alive_timeout=7) as client:
        await client.send_all(GET)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        answer = await read_to_end(client)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"GET /page")  # nothing more
    assert trio.current_time() - start == pytest.approx(7)


# ------------------------------------------------------------------------------------- shutdown


async def test_shutdown_closes_idle_connections_and_lets_responses_under_way_finish() -> None:
    async with serving(close_timeout=10) as server:
        idle = await trio.open_tcp_stream("127.0.0.1", server.port)
        busy = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with idle, busy:
            await idle.send_all(GET)
            await busy.send_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while not got.endswith(b"GET /page"):
                got += await idle.receive_some()
            first = b""
            while b"first " not in first:
                first += await busy.receive_some()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.aclose)
                assert await idle.receive_some() == b""  # closed at once
                RELEASE[0].set()
                rest = await read_to_end(busy)
    assert rest.endswith(b"4\r\nlast\r\n0\r\n\r\n")  # the whole response, then closed
