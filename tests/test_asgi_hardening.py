"""``serve_asgi`` under stress and misuse, mostly over memory streams (the clock is the test's).
HTTP: responses that break their own framing, a head written once shutdown began, applications that
outlive their clients, slow request bodies, the first request parsed as the later ones, 400s that do
not echo the request, the rules of the response messages, the state each request gets, and the
connections a shutdown or an early answer ends. WebSockets: trio_ws's protections (origins,
max_connections, max_message_size, backpressure) and the state each connection gets."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from trio_ws import HandshakeRejected, WebSocketDisconnect, WebSocketOptions, WebSocketServer, open_websocket
from trio_ws.asgi import Message, Receive, Scope, Send, open_asgi_server
from trio_ws.asgi._h11 import WATCH_INTERVAL
from trio_ws.client import connect_websocket, run_client

#: What the application saw and did, for the tests to check.
EVENTS: list[Any] = []
GATE: list[trio.Event] = []  # what /gate, /hold and /background wait for
STARTED: list[trio.Event] = []  # set when /forever and /hold began
ENDED: list[trio.Event] = []  # set when /forever ended


async def respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive) -> None:
    """Receive until the body is whole or the request is over (each event goes to EVENTS)."""
    while True:
        message = await receive()
        EVENTS.append(message)
        if message["type"] != "http.request" or not message.get("more_body"):
            return


async def attempt(call: Awaitable[None]) -> None:
    """``call``, and what it raised into EVENTS."""
    try:
        await call
    except Exception as exc:
        EVENTS.append(f"{type(exc).__name__}: {exc}")
    else:
        EVENTS.append("nothing")


async def lifespan(receive: Receive, send: Send, scope: Scope) -> None:
    await receive()
    scope["state"]["db"] = "pool"
    await send({"type": "lifespan.startup.complete"})
    await receive()
    await send({"type": "lifespan.shutdown.complete"})


async def websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """Accepts; ``/state`` says the state it sees and keeps something there; ``/slow`` receives
    once the gate opens; each receives until the client is gone, counting the messages."""
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    if scope["path"] == "/state":
        EVENTS.append(sorted(scope["state"].items()))
        scope["state"]["mine"] = True  # (a copy: no other connection sees it)
        await send({"type": "websocket.send", "text": "ok"})
    elif scope["path"] == "/slow":
        await GATE[0].wait()
    count = 0
    while (message := await receive())["type"] == "websocket.receive":
        count += 1
    EVENTS.append((count, message["code"]))


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        return await lifespan(receive, send, scope)
    if scope["type"] == "websocket":
        return await websocket(scope, receive, send)
    path = scope["path"]
    start: Message = {"type": "http.response.start", "status": 200, "headers": []}
    if path == "/short":  # 3 bytes of a declared 10
        await send({**start, "headers": [(b"content-length", b"10")]})
        await send({"type": "http.response.body", "body": b"abc"})
    elif path == "/long":  # 10 bytes of a declared 3
        await send({**start, "headers": [(b"content-length", b"3")]})
        await send({"type": "http.response.body", "body": b"0123456789"})
    elif path == "/long-later":  # too many bytes once the head is out
        await send({**start, "headers": [(b"content-length", b"10")]})
        await send({"type": "http.response.body", "body": b"abcde", "more_body": True})
        await send({"type": "http.response.body", "body": b"fghijklm"})
    elif path == "/gate":  # the head goes out once the test opens the gate
        await GATE[0].wait()
        await respond(send, 200, b"late")
    elif path == "/forever":  # never receives, never answers
        STARTED[0].set()
        try:
            await trio.sleep_forever()
        except BaseException as exc:
            EVENTS.append(type(exc).__name__)
            ENDED[0].set()
            raise
    elif path == "/hold":  # answers once the test opens the gate, a receive waiting meanwhile
        async with trio.open_nursery() as nursery:

            async def listen() -> None:
                EVENTS.append(await receive())  # the body
                EVENTS.append(await receive())  # (waits: the client stays)

            nursery.start_soon(listen)
            STARTED[0].set()
            await GATE[0].wait()
            await respond(send, 200, b"held")
    elif path == "/wait-for-the-client":
        await read_body(receive)
        STARTED[0].set()
        EVENTS.append(await receive())
        ENDED[0].set()
    elif path == "/upload":
        await read_body(receive)
        await respond(send, 200, b"read")
    elif path == "/upload-streaming":  # answers first, then reads the body
        await send(start)
        await send({"type": "http.response.body", "body": b"started", "more_body": True})
        await read_body(receive)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/early":  # answers without asking for the body (?keep-alive: says it keeps the connection)
        keep = [(b"connection", b"keep-alive")] if scope["query_string"] == b"keep-alive" else []
        await respond(send, 200, b"early", keep)
    elif path == "/background":  # the response is complete, the application is not
        await respond(send, 200, b"done")
        await GATE[0].wait()
    elif path == "/state":
        EVENTS.append(sorted(scope["state"].items()))
        scope["state"]["mine"] = scope["query_string"].decode()  # (a copy: no other request sees it)
        await respond(send, 200, b"state")
    elif path == "/body-after-complete":
        await respond(send, 200, b"whole")
        await attempt(send({"type": "http.response.body", "body": b"more"}))
    elif path == "/body-before-start":
        await attempt(send({"type": "http.response.body", "body": b"early"}))
        await respond(send, 200, b"then")
    elif path == "/status":
        status: Any = {b"s=199": 199, b"s=600": 600, b"s=str": "200"}[scope["query_string"]]
        await attempt(send({**start, "status": status}))
        await respond(send, 200, b"then")
    else:
        EVENTS.append(scope)
        await respond(send, 200, f"{scope['method']} {path}".encode())


class Counting(trio.abc.Stream):
    """A stream that counts the bytes read from it."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.read = 0

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.stream.receive_some(max_bytes)
        self.read += len(data)
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.stream.aclose()


Connect = Callable[[], trio.abc.Stream]


@asynccontextmanager
async def serving(**settings: Any) -> AsyncIterator[tuple[WebSocketServer, Connect]]:
    """The ASGI server and a function that opens a connection to it over memory streams."""
    EVENTS.clear()
    GATE[:] = [trio.Event()]
    STARTED[:] = [trio.Event()]
    ENDED[:] = [trio.Event()]
    settings.setdefault("lifespan", "off")
    async with open_asgi_server(app, listeners=[], **settings) as server, trio.open_nursery() as nursery:

        def connect() -> trio.abc.Stream:
            client, server_side = trio.testing.memory_stream_pair()
            nursery.start_soon(server.serve_stream, server_side)
            return client

        try:
            yield server, connect
        finally:  # (before the nursery waits for the connections, which only a shutdown ends)
            await server.aclose()


async def read_to_end(stream: trio.abc.ReceiveStream) -> bytes:
    answer = b""
    with trio.fail_after(100):
        while chunk := await stream.receive_some():
            answer += chunk
    return answer


async def exchange(connect: Connect, data: bytes) -> bytes:
    """Send ``data``; everything the server answers until it closes the connection (then this
    side closes too, as clients do)."""
    async with connect() as client:
        await client.send_all(data)
        return await read_to_end(client)


def get(path: str, *headers: str) -> bytes:
    lines = "".join(f"{header}\r\n" for header in headers)
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{lines}\r\n".encode()


def head_of(answer: bytes) -> bytes:
    return answer.partition(b"\r\n\r\n")[0].lower()


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "trio_ws.access"]


def asgi_records(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "trio_ws.asgi" and r.levelno >= level]


# ----------------------------------------------------- a response that breaks its own framing


@pytest.mark.parametrize("path", ["/short", "/long"])
async def test_a_body_that_does_not_match_its_content_length_gets_500_logged_once(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with serving() as (_, connect):
        answer = await exchange(connect, get(path, "Connection: close"))
    assert answer.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), answer
    assert b"server: trio_ws" in head_of(answer)
    (line,) = access_lines(caplog)
    assert f"{path} 500 " in line
    (record,) = asgi_records(caplog)  # one line, no traceback
    assert record.exc_info is None
    assert "Content-Length" in record.getMessage() and "500" in record.getMessage()


async def test_a_framing_error_once_the_head_is_out_drops_the_connection_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with serving() as (_, connect):
        answer = await exchange(connect, get("/long-later"))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nabcde")  # cut off
    (record,) = asgi_records(caplog)
    assert record.exc_info is None
    assert "dropped" in record.getMessage()
    assert len(access_lines(caplog)) == 1


# ------------------------------------------------------------------ Connection: close at shutdown


async def test_a_head_written_once_shutdown_began_says_connection_close() -> None:
    async with serving(close_timeout=10) as (server, connect):
        client = connect()
        await client.send_all(get("/gate"))
        await trio.testing.wait_all_tasks_blocked()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.aclose)
            await trio.testing.wait_all_tasks_blocked()
            GATE[0].set()
            answer = await read_to_end(client)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"late")
    assert b"connection: close" in head_of(answer)


async def test_a_response_complete_before_shutdown_still_ends_its_keep_alive_connection() -> None:
    async with serving(close_timeout=10) as (server, connect):
        client = connect()
        await client.send_all(get("/background") + get("/page"))  # (pipelined: already there)
        answer = b""
        while not answer.endswith(b"done"):
            answer += await client.receive_some()
        assert b"connection: close" not in head_of(answer)  # (out before the shutdown)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.aclose)
            await trio.testing.wait_all_tasks_blocked()
            GATE[0].set()
            answer += await read_to_end(client)
    assert answer.count(b"HTTP/1.1 ") == 1  # the pipelined request is not served
    assert not [event for event in EVENTS if isinstance(event, dict)]


@pytest.mark.parametrize("target", ["/early", "/early?keep-alive"])
async def test_an_early_answer_to_expect_100_continue_closes_at_once(
    target: str, autojump_clock: trio.testing.MockClock
) -> None:
    async with serving(open_timeout=30) as (_, connect):
        client = connect()
        await client.send_all(
            f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        start = trio.current_time()
        answer = await read_to_end(client)
    assert trio.current_time() == start  # (not after waiting for a body the client may never send)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"early")
    assert b"100 continue" not in answer.lower()
    if target == "/early":
        assert b"connection: close" in head_of(answer)


# ----------------------------------------------------------- an application outliving its client


async def test_an_app_that_never_receives_is_cancelled_close_timeout_after_its_client_left(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serving(max_connections=1, close_timeout=5) as (_, connect):
        client = connect()
        await client.send_all(get("/forever"))
        with trio.fail_after(100):
            await STARTED[0].wait()
        await client.aclose()
        start = trio.current_time()
        with trio.fail_after(100):
            await ENDED[0].wait()
        assert EVENTS == ["Cancelled"]
        # (close_timeout after the server saw the client leave: it looks at slow requests each second)
        assert 5 <= trio.current_time() - start <= 5 + 2 * WATCH_INTERVAL
        await trio.testing.wait_all_tasks_blocked()
        answer = await exchange(connect, get("/page", "Connection: close"))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")  # the slot is free again (max_connections=1)


async def test_requests_pipelined_while_the_app_runs_are_kept_and_read_ahead_is_bounded() -> None:
    async with serving(max_request_size=4096) as (server, _):
        client, server_side = trio.testing.memory_stream_pair()
        counting = Counting(server_side)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.serve_stream, counting)
            first = get("/hold") + get("/page") + get("/last", "Connection: close")
            await client.send_all(first + get("/more") * 5000)  # far more than may be read ahead
            await STARTED[0].wait()
            await trio.testing.wait_all_tasks_blocked()
            assert counting.read <= 65536 + 4096 + 1  # (the first read, then max_request_size + 1)
            GATE[0].set()
            answer = await read_to_end(client)
    assert answer.count(b"HTTP/1.1 200 OK\r\n") == 3
    assert answer.endswith(b"GET /last")
    assert b"held" in answer and b"GET /page" in answer
    assert EVENTS[:2] == [
        {"type": "http.request", "body": b"", "more_body": False},
        {"type": "http.disconnect"},
    ]


async def test_a_pending_receive_gets_http_disconnect_as_soon_as_the_client_leaves(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serving() as (_, connect):
        client = connect()
        await client.send_all(get("/wait-for-the-client"))
        with trio.fail_after(100):
            await STARTED[0].wait()
        await client.aclose()
        start = trio.current_time()
        with trio.fail_after(100):
            await ENDED[0].wait()
    assert trio.current_time() == start
    assert EVENTS[-1] == {"type": "http.disconnect"}


# ------------------------------------------------------------------------- a slow request body


async def test_a_stalled_request_body_gets_408_and_the_app_http_disconnect(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serving(open_timeout=3) as (_, connect):
        client = connect()
        await client.send_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
        start = trio.current_time()
        answer = await read_to_end(client)
        assert trio.current_time() - start == pytest.approx(3)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert EVENTS == [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.disconnect"},
    ]


async def test_a_stalled_request_body_once_the_response_began_drops_the_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serving(open_timeout=3) as (_, connect):
        client = connect()
        await client.send_all(b"POST /upload-streaming HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
        answer = await read_to_end(client)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"7\r\nstarted\r\n")  # no last chunk: dropped
    assert EVENTS[-1] == {"type": "http.disconnect"}


# ---------------------------------------------------------------- the first request and the rest


@pytest.mark.parametrize("later", [False, True], ids=["first", "later"])
async def test_the_first_request_is_parsed_as_the_later_ones(later: bool) -> None:
    bare_lf = b"GET /bare HTTP/1.1\nHost: x\nConnection: close\n\n"
    async with serving() as (_, connect):
        answer = await exchange(connect, (get("/page") if later else b"") + bare_lf)
    assert answer.rpartition(b"HTTP/1.1 ")[2].startswith(b"200 OK\r\n"), answer
    assert answer.endswith(b"GET /bare")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [(b"BAD\r\n\r\n", 400), (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431)],
    ids=["malformed", "too-large"],
)
async def test_the_refusals_of_a_first_request_carry_the_server_header(
    request_bytes: bytes, status: int
) -> None:
    async with serving(max_request_size=8192) as (_, connect):
        answer = await exchange(connect, request_bytes)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
    assert b"server: trio_ws" in head_of(answer)


async def test_a_first_request_head_too_slow_gets_408_with_the_server_header(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serving(open_timeout=3) as (_, connect):
        answer = await exchange(connect, b"GET / HTTP/1.1\r\nHo")
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"server: trio_ws" in head_of(answer)


@pytest.mark.parametrize("later", [False, True], ids=["first", "later"])
async def test_a_400_does_not_echo_the_request_and_its_detail_is_logged_at_debug(
    later: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_ws")
    async with serving() as (_, connect):
        answer = await exchange(
            connect, (get("/page") if later else b"") + b"GET /h\xffead HTTP/1.1\r\nHost: x\r\n\r\n"
        )
    refusal = answer.rpartition(b"HTTP/1.1 ")[2]
    assert refusal.startswith(b"400 Bad Request\r\n")
    body = refusal.partition(b"\r\n\r\n")[2]
    assert b"\xff" not in body and b"head" not in body and b"bytearray" not in body
    assert body == b"malformed request\n"
    details = [
        r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG and "illegal" in r.getMessage()
    ]
    assert details, [r.getMessage() for r in caplog.records]


# ------------------------------------------------------------------ the rules of the messages


@pytest.mark.parametrize(
    ("target", "raised"),
    [
        ("/body-after-complete", "RuntimeError: 'http.response.body' after the response was complete"),
        ("/body-before-start", "RuntimeError: expected http.response.start, got 'http.response.body'"),
        ("/status?s=199", "RuntimeError: an HTTP response's status is 200-599, not 199"),
        ("/status?s=600", "RuntimeError: an HTTP response's status is 200-599, not 600"),
        ("/status?s=str", "RuntimeError: an HTTP response's status is 200-599, not '200'"),
    ],
)
async def test_a_response_message_out_of_turn_raises_in_the_app_and_the_connection_goes_on(
    target: str, raised: str
) -> None:
    async with serving() as (_, connect):
        answer = await exchange(connect, get(target) + get("/last", "Connection: close"))
    assert EVENTS[0] == raised
    first, last = answer.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert first.endswith(b"whole" if "complete" in target else b"then")
    assert last.endswith(b"GET /last")  # (the connection went on)


async def test_each_request_gets_its_own_copy_of_the_lifespan_state() -> None:
    async with serving(lifespan="on") as (_, connect):
        await exchange(connect, get("/state?one") + get("/state?two", "Connection: close"))  # one connection
        await exchange(connect, get("/state?three", "Connection: close"))  # another
    assert EVENTS == [[("db", "pool")]] * 3  # the lifespan's, and nothing another request kept


async def test_an_absolute_form_target_gives_its_path() -> None:
    async with serving(root_path="/api") as (_, connect):
        answer = await exchange(
            connect, b"GET http://example.com/abs/x?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    (scope,) = EVENTS
    assert scope["path"] == "/api/abs/x"
    assert scope["raw_path"] == b"/api/abs/x"
    assert scope["query_string"] == b"q=1"


# ---------------------------------------------------------- the WebSocket side: trio_ws's protections


@asynccontextmanager
async def over_tcp(**settings: Any) -> AsyncIterator[WebSocketServer]:
    EVENTS.clear()
    GATE[:] = [trio.Event()]
    settings.setdefault("lifespan", "off")
    async with open_asgi_server(app, "127.0.0.1", 0, **settings) as server:
        yield server


async def test_origins_refuse_a_handshake_with_403_before_the_app_sees_it() -> None:
    async with over_tcp(origins=["https://good.example"]) as server:
        with pytest.raises(HandshakeRejected) as refused:
            async with open_websocket("127.0.0.1", server.port, "/", origin="https://evil.example"):
                pass
        async with open_websocket("127.0.0.1", server.port, "/", origin="https://good.example"):
            pass
    assert refused.value.status == 403
    assert EVENTS == [(0, 1000)]  # (only the allowed connection reached the application)


async def test_max_connections_refuses_websockets_and_http_with_503() -> None:
    async with over_tcp(max_connections=1) as server, open_websocket("127.0.0.1", server.port, "/"):
        with pytest.raises(HandshakeRejected) as refused:
            async with open_websocket("127.0.0.1", server.port, "/"):
                pass
        async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
            await stream.send_all(get("/page"))
            answer = await read_to_end(stream)
    assert refused.value.status == 503
    assert answer.startswith(b"HTTP/1.1 503 ")


async def test_max_message_size_closes_with_1009_and_the_app_hears_it() -> None:
    async with over_tcp(max_message_size=1000) as server, open_websocket("127.0.0.1", server.port, "/") as ws:
        await ws.send_bytes(b"x" * 500)
        await ws.send_bytes(b"x" * 2000)
        with pytest.raises(WebSocketDisconnect) as closed:
            await ws.receive()
    assert closed.value.code == 1009
    assert EVENTS == [(1, 1009)]


async def test_a_slow_app_stops_the_reading_and_loses_nothing() -> None:
    async with serving(max_queue=4) as (server, _):
        client_stream, server_stream = trio.testing.memory_stream_pair()
        counting = Counting(server_stream)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.serve_stream, counting)
            handshake = await connect_websocket(
                client_stream, "x", "/slow", WebSocketOptions(compression=None)
            )
            async with run_client(handshake) as ws:
                for _ in range(1000):  # 1 MB: into the memory stream, which holds what is not read
                    await ws.send_bytes(b"x" * 1024)
                await trio.testing.wait_all_tasks_blocked()
                (connection,) = server.connections
                assert counting.read < 300_000  # the server stopped reading
                assert connection.pending_messages < 300
                assert server.budget.used < 300_000
                GATE[0].set()
                await ws.close()
    assert EVENTS == [(1000, 1000)]


async def test_each_websocket_gets_its_own_copy_of_the_lifespan_state() -> None:
    async with over_tcp(lifespan="on") as server:
        for _ in range(2):
            async with open_websocket("127.0.0.1", server.port, "/state") as ws:
                assert await ws.receive_text() == "ok"
    assert [event for event in EVENTS if isinstance(event, list)] == [[("db", "pool")]] * 2
