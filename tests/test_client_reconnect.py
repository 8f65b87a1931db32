"""reconnecting(): the waits between attempts (exact, on a mock clock), what is tried again and what
is raised, the connection closed after each loop body, break, cancellation."""

from __future__ import annotations

import contextlib
import itertools
import ssl
from collections.abc import Awaitable, Callable, Sequence

import pytest
import trio
import trio.testing

from trio_ws import (
    Backoff,
    ConnectionClosed,
    HandshakeRejected,
    ProxyError,
    Reconnecting,
    WebSocket,
    WebSocketOptions,
    open_websocket_server,
    reconnecting,
)
from trio_ws.client import ClientHandshake, connect_websocket
from trio_ws.client._reconnect import retryable
from trio_ws.server import WebSocketServer

OPTIONS = WebSocketOptions(ping_interval=None)
EXACT = Backoff(initial_delay=1, factor=2, max_delay=60, jitter=0, reset_after=60)

Handler = Callable[[WebSocket], Awaitable[None]]
Step = Exception | Handler | str


def closes(code: int) -> Handler:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws.close(code)

    return handler


def lives(seconds: float, code: int) -> Handler:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await trio.sleep(seconds)
        await ws.close(code)

    return handler


def refuses(status: int, headers: Sequence[tuple[str, str]] = ()) -> Handler:
    async def handler(ws: WebSocket) -> None:
        await ws.reject(status, headers=headers)

    return handler


async def drops(ws: WebSocket) -> None:
    await ws.accept()
    await ws.stream.aclose()  # the connection is lost: no close frame


class Servers:
    """A connect function for reconnecting(): each attempt takes the next step of ``plan`` — an
    exception to raise, a handler to serve the connection with (over memory streams), ``"eof"``
    (the server reads the request and hangs up) or ``"garbage"`` (an invalid 101)."""

    def __init__(self, nursery: trio.Nursery, plan: Sequence[Step]) -> None:
        self.nursery = nursery
        self.plan = list(plan)
        self.attempts: list[float] = []
        self.closed_by_server: list[int | None] = []  # what each server handler saw, when it ends

    async def __call__(self) -> ClientHandshake:
        self.attempts.append(trio.current_time())
        await trio.lowlevel.checkpoint()
        step = self.plan.pop(0)
        if isinstance(step, Exception):
            raise step
        client_stream, server_stream = trio.testing.memory_stream_pair()
        if isinstance(step, str):
            self.nursery.start_soon(self.answer, server_stream, step)
        else:
            server = WebSocketServer(self.recording(step), OPTIONS)
            self.nursery.start_soon(server.serve_stream, server_stream)
        try:
            return await connect_websocket(client_stream, "test", "/", OPTIONS)
        except BaseException:
            await trio.aclose_forcefully(client_stream)
            raise

    def recording(self, handler: Handler) -> Handler:
        async def run(ws: WebSocket) -> None:
            try:
                await handler(ws)
            finally:
                self.closed_by_server.append(ws.close_code)

        return run

    @staticmethod
    async def answer(stream: trio.abc.Stream, how: str) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some()
        if how == "garbage":
            await stream.send_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        await stream.aclose()

    def waits(self) -> list[float]:
        return [later - earlier for earlier, later in itertools.pairwise(self.attempts)]


async def take_all(connections: Reconnecting) -> list[int | None]:
    """The loop body most tests use: wait for each connection to close; return the close codes."""
    codes = []
    async for ws in connections:
        with contextlib.suppress(ConnectionClosed):
            await ws.receive()
        codes.append(ws.close_code)
    return codes


async def test_waits_double_from_the_initial_delay_up_to_the_maximum(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        servers = Servers(nursery, [*[OSError("refused")] * 5, closes(1000)])
        backoff = Backoff(initial_delay=1, factor=2, max_delay=10, jitter=0)
        async with reconnecting(servers, backoff=backoff) as connections:
            assert await take_all(connections) == [1000]
        assert servers.waits() == [1, 2, 4, 8, 10]
        assert (connections.connections, connections.failures, connections.last_delay) == (1, 5, 10)


async def test_a_lost_connection_and_a_1001_1011_1012_1013_close_reconnect(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        plan: list[Step] = [drops, closes(1011), closes(1012), closes(1013), closes(1001), closes(1000)]
        servers = Servers(nursery, plan)
        async with reconnecting(servers, backoff=EXACT) as connections:
            assert await take_all(connections) == [1006, 1011, 1012, 1013, 1001, 1000]
        assert servers.waits() == [1, 2, 4, 8, 16]  # short-lived connections do not reset the waits


@pytest.mark.parametrize("code", [1000, 1008, 4001])
async def test_a_close_that_reconnecting_would_not_help_ends_the_loop(
    autojump_clock: trio.testing.MockClock, code: int
) -> None:
    async with trio.open_nursery() as nursery:
        servers = Servers(nursery, [closes(code), closes(1000)])
        async with reconnecting(servers, backoff=EXACT) as connections:
            assert await take_all(connections) == [code]
        assert len(servers.attempts) == 1


async def test_reconnect_codes_can_be_chosen(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        servers = Servers(nursery, [closes(1000), closes(4000), closes(1011)])
        async with reconnecting(servers, backoff=EXACT, reconnect_codes={1000, 4000}) as connections:
            assert await take_all(connections) == [1000, 4000, 1011]
        assert servers.waits() == [1, 2]


async def test_a_connection_that_lived_a_while_resets_the_waits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        refused = OSError("refused")
        plan: list[Step] = [refused, refused, lives(100, 1012), refused]
        plan += [lives(10, 1012), refused, closes(1000)]
        servers = Servers(nursery, plan)
        backoff = Backoff(initial_delay=1, factor=2, max_delay=60, jitter=0, reset_after=30)
        async with reconnecting(servers, backoff=backoff) as connections:
            assert await take_all(connections) == [1012, 1012, 1000]
        # 1, 2; lived 100 s >= 30: back to 1, then 2; lived 10 s < 30: 4 goes on, then 8.
        assert servers.waits() == pytest.approx([1, 2, 100 + 1, 2, 10 + 4, 8])


async def test_jitter_shortens_each_wait_by_a_random_fraction(autojump_clock: trio.testing.MockClock) -> None:
    for jitter, low in ((0.5, 4.0), (1.0, 0.0)):
        async with trio.open_nursery() as nursery:
            servers = Servers(nursery, [*[OSError("refused")] * 8, closes(1000)])
            backoff = Backoff(initial_delay=8, factor=1, max_delay=8, jitter=jitter)
            async with reconnecting(servers, backoff=backoff) as connections:
                await take_all(connections)
            waits = servers.waits()
            assert all(low <= wait <= 8 for wait in waits), waits
            assert len(set(waits)) > 1, waits


async def test_a_4xx_refusal_is_raised_and_not_tried_again(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        servers = Servers(nursery, [OSError("refused"), refuses(403), closes(1000)])
        with pytest.raises(HandshakeRejected) as info:
            async with reconnecting(servers, backoff=EXACT) as connections:
                await take_all(connections)
        assert info.value.status == 403
        assert servers.waits() == [1]


async def test_5xx_and_429_refusals_are_tried_again_after_retry_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        plan = [refuses(503), refuses(429, [("Retry-After", "30")]), refuses(500), closes(1000)]
        servers = Servers(nursery, plan)
        async with reconnecting(servers, backoff=EXACT) as connections:
            assert await take_all(connections) == [1000]
        assert servers.waits() == [1, 30, 4]  # Retry-After: 30 is longer than the 2 s wait


async def test_a_server_hanging_up_before_answering_is_tried_again_an_invalid_answer_is_raised(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        servers = Servers(nursery, ["eof", "eof", "garbage"])
        with pytest.raises(HandshakeRejected) as info:
            async with reconnecting(servers, backoff=EXACT) as connections:
                await take_all(connections)
        assert info.value.status == 0
        assert "Upgrade" in info.value.reason
        assert servers.waits() == [1, 2]


async def test_leaving_the_loop_body_closes_its_connection(autojump_clock: trio.testing.MockClock) -> None:
    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        async for text in ws.iter_text():
            await ws.send_text(text)

    async with trio.open_nursery() as nursery:
        servers = Servers(nursery, [echo, echo, echo])
        seen = []
        async with reconnecting(servers, backoff=EXACT) as connections:
            async for ws in connections:
                await ws.send_text(f"hello {connections.connections}")
                seen.append(await ws.receive_text())
                if connections.connections == 3:
                    break  # leaves the async with: this one is closed too
            # (the first two were left open by the body: the loop closed them and connected again)
        assert seen == ["hello 1", "hello 2", "hello 3"]
        assert servers.waits() == [1, 2]
        assert ws.close_code == 1000
    assert servers.closed_by_server == [1000, 1000, 1000]


async def test_an_exception_in_the_body_propagates_unchanged(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        servers = Servers(nursery, [lives(100, 1000)])
        with pytest.raises(KeyError, match="boom"):
            async with reconnecting(servers, backoff=EXACT) as connections:
                async for _ in connections:
                    raise KeyError("boom")
    assert servers.closed_by_server == [1000]


async def test_cancellation_during_a_wait_ends_it(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        servers = Servers(nursery, [OSError("refused")] * 10)
        with trio.move_on_after(5.5) as scope:
            async with reconnecting(servers, backoff=EXACT) as connections:
                await take_all(connections)
        assert scope.cancelled_caught
        assert servers.attempts == [0, 1, 3]  # the next one would be at 7


async def test_aclose_ends_the_iteration(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        servers = Servers(nursery, [lives(100, 1000), closes(1000)])
        async with reconnecting(servers, backoff=EXACT) as connections:
            async for ws in connections:
                await connections.aclose()
                assert ws.is_closed
        assert len(servers.attempts) == 1


def test_what_is_tried_again() -> None:
    assert retryable(OSError("unreachable"))
    assert retryable(ConnectionRefusedError())
    assert retryable(trio.TooSlowError())
    assert retryable(trio.BrokenResourceError())
    assert retryable(HandshakeRejected(502, "bad gateway"))
    assert not retryable(HandshakeRejected(401, "unauthorized"))
    assert not retryable(HandshakeRejected(0, "wrong Sec-WebSocket-Accept"))
    assert retryable(ProxyError("503 Service Unavailable", status=503))
    assert not retryable(ProxyError("407 Proxy Authentication Required", status=407))
    assert not retryable(ProxyError("SOCKS: authentication failed", reply=None))
    assert not retryable(ValueError("bad URL"))
    assert not retryable(ssl.SSLCertVerificationError("certificate verify failed"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_delay": -1},
        {"initial_delay": 10, "max_delay": 5},
        {"factor": 0.5},
        {"jitter": 1.5},
        {"reset_after": -1},
    ],
)
def test_backoff_refuses_settings_that_make_no_sense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="Backoff needs"):
        Backoff(**kwargs)


async def test_bad_arguments_are_refused_before_connecting() -> None:
    with pytest.raises(ValueError, match="ws://"):
        async with reconnecting("http://example.com/"):
            pass  # pragma: no cover
    with pytest.raises(ValueError, match="Host"):
        async with reconnecting("ws://127.0.0.1:1/", headers=[("Host", "x")]):
            pass  # pragma: no cover
    with pytest.raises(ValueError, match="proxy"):
        async with reconnecting("ws://127.0.0.1:1/", proxy="ftp://proxy:21"):
            pass  # pragma: no cover
    with pytest.raises(TypeError):
        async with reconnecting("ws://127.0.0.1:1/", no_such_option=1):
            pass  # pragma: no cover

    async def connect() -> ClientHandshake:
        raise AssertionError("not called")  # pragma: no cover

    with pytest.raises(TypeError, match="connect function"):
        async with reconnecting(connect, ping_interval=None):
            pass  # pragma: no cover


async def test_reconnecting_to_a_url() -> None:
    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        async for text in ws.iter_text():
            await ws.send_text(text)

    async with open_websocket_server(echo, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.port}/feed"
        async with reconnecting(url, backoff=EXACT, user_agent="feed/1") as connections:
            async for ws in connections:
                assert ws.response is not None and ws.response.status == 101
                assert ws.headers["user-agent"] == "feed/1"
                await ws.send_text("over tcp")
                assert await ws.receive_text() == "over tcp"
                break
        assert ws.close_code == 1000
