"""The WebSocket API, both ends, through the test client (real protocol and server code paths)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
import trio
import trio.lowlevel
import trio.testing

from trio_ws import (
    CloseCode,
    HandshakeRejected,
    WebSocket,
    WebSocketClose,
    WebSocketDisconnect,
    WebSocketOptions,
    WebSocketServer,
    WebSocketState,
)
from trio_ws.protocol import BytesMessage, CloseReceived, Connection, Ping, Role, TextMessage, build_request
from trio_ws.testing import open_test_client


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    async for message in ws.iter_text():
        await ws.send_text(message)


async def test_echo_and_normal_close() -> None:
    async with open_test_client(echo, "/room") as client:
        await client.send_text("hi")
        assert await client.receive_text(timeout=1) == "hi"
    assert client.close_code == CloseCode.NORMAL_CLOSURE


async def test_json_both_modes_and_bytes() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_json(await ws.receive_json())
        await ws.send_json(await ws.receive_json(mode="binary"), mode="binary")
        await ws.send_bytes(await ws.receive_bytes())

    async with open_test_client(handler) as client:
        await client.send_json({"a": [1, "é"]})
        assert await client.receive_json(timeout=1) == {"a": [1, "é"]}
        await client.send_json([1], mode="binary")
        assert await client.receive_json(mode="binary", timeout=1) == [1]
        await client.send_bytes(b"\x00\xff")
        assert await client.receive_bytes(timeout=1) == b"\x00\xff"


@pytest.mark.parametrize(
    ("receive", "send", "code"),
    [
        ("receive_text", b"binary", CloseCode.UNSUPPORTED_DATA),
        ("receive_bytes", "text", CloseCode.UNSUPPORTED_DATA),
        ("receive_json", "{not json", CloseCode.INVALID_FRAME_PAYLOAD_DATA),
    ],
)
async def test_wrong_message_type_closes_with_clear_code(receive: str, send: str | bytes, code: int) -> None:
    raised: list[WebSocketDisconnect] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            await getattr(ws, receive)()
        except WebSocketDisconnect as exc:
            raised.append(exc)
            raise

    async with open_test_client(handler) as client:
        if isinstance(send, str):
            await client.send_text(send)
        else:
            await client.send_bytes(send)
        assert await client.wait_closed(timeout=1) == code
    assert raised[0].code == code
    assert "expected" in raised[0].reason or "JSON" in raised[0].reason


async def test_handler_returning_without_accept_is_403_and_reject_any_status() -> None:
    async def silent(ws: WebSocket) -> None:
        pass

    with pytest.raises(HandshakeRejected) as info:
        async with open_test_client(silent):
            pass  # pragma: no cover
    assert info.value.status == 403

    async def refuse(ws: WebSocket) -> None:
        await ws.reject(429, "slow down", headers=[("Retry-After", "3")])

    async def refuse_long(ws: WebSocket) -> None:
        await ws.reject(400, "x" * 100_000)  # arrives in several reads; the client keeps 64 KiB

    with pytest.raises(HandshakeRejected) as info:
        async with open_test_client(refuse_long):
            pass  # pragma: no cover
    assert info.value.body == b"x" * 65536

    with pytest.raises(HandshakeRejected) as info:
        async with open_test_client(refuse):
            pass  # pragma: no cover
    assert info.value.status == 429
    assert info.value.headers is not None
    assert info.value.headers["retry-after"] == "3"
    assert info.value.body == b"slow down"


async def test_handler_exception_closes_1011_without_leaking_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def crash(ws: WebSocket) -> None:
        await ws.accept()
        raise RuntimeError("secret database password")

    with caplog.at_level(logging.ERROR, logger="trio_ws"):
        async with open_test_client(crash, raise_server_exceptions=False) as client:
            assert await client.wait_closed(timeout=1) == CloseCode.INTERNAL_ERROR
    assert "secret" not in client.close_reason
    assert any("secret database password" in str(r.exc_info) for r in caplog.records)

    async def crash_before_accept(ws: WebSocket) -> None:
        raise RuntimeError("boom")

    with pytest.raises(HandshakeRejected) as info:
        async with open_test_client(crash_before_accept, raise_server_exceptions=False):
            pass  # pragma: no cover
    assert info.value.status == 500
    assert b"boom" not in info.value.body


async def test_websocket_close_exception_and_close_reason() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        raise WebSocketClose(4000, "custom")

    async with open_test_client(handler) as client:
        assert await client.wait_closed(timeout=1) == 4000
    assert client.close_reason == "custom"


async def test_iteration_raises_on_abnormal_close_and_ends_on_normal() -> None:
    seen: list[object] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            async for message in ws.iter_bytes():
                seen.append(message)
            seen.append("ended")
        except WebSocketDisconnect as exc:
            seen.append(exc.code)

    async with open_test_client(handler) as client:
        await client.send_bytes(b"1")
        await client.close(4321)
    async with open_test_client(handler) as client:
        await client.send_bytes(b"2")
        await client.close(1001)
    assert seen == [b"1", 4321, b"2", "ended"]


async def test_states_and_request() -> None:
    states: list[object] = []

    async def handler(ws: WebSocket) -> None:
        states.append((ws.client_state, ws.application_state, ws.path))
        assert ws.request is not None
        states.append(ws.request.headers["x-token"])
        await ws.accept()
        states.append((ws.client_state, ws.application_state))
        with pytest.raises(WebSocketDisconnect):
            await ws.receive()
        states.append(ws.client_state)
        await ws.close()
        states.append(ws.application_state)

    async with open_test_client(handler, "/p", query_string="a=1", headers=[("X-Token", "t")]) as client:
        await client.close()
    c, d = WebSocketState.CONNECTED, WebSocketState.DISCONNECTED
    assert states == [
        (WebSocketState.CONNECTING, WebSocketState.CONNECTING, "/p"),
        "t",
        (c, c),
        d,
        d,
    ]


async def test_subprotocols() -> None:
    async def handler(ws: WebSocket) -> None:
        with pytest.raises(ValueError, match="did not offer it"):
            await ws.accept(subprotocol="nope")
        await ws.accept()  # the server-level list picks the first offered
        await ws.send_text(str(ws.subprotocol))

    async with open_test_client(
        handler, subprotocols=["v2", "v1"], server_subprotocols=["v1", "v2"]
    ) as client:
        assert client.subprotocol == "v2"
        assert await client.receive_text(timeout=1) == "v2"


async def test_two_receivers_at_once_is_an_immediate_error() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ws.receive)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await ws.receive()
            await ws.send_text("checked")
        # the first receive got the client's message

    async with open_test_client(handler) as client:
        assert await client.receive_text(timeout=1) == "checked"
        await client.send_text("release")


async def test_ping_latency_and_pong() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        latency = await ws.ping(b"abc")
        assert latency >= 0
        assert ws.latency == latency
        await ws.pong(b"heartbeat")
        await ws.send_text("done")
        await ws.receive()

    async with open_test_client(handler) as client:
        assert await client.receive_text(timeout=1) == "done"
        assert await client.ping() >= 0


async def test_concurrent_senders_never_interleave_frames() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()

        async def fragmented(i: int) -> None:
            async def pieces() -> AsyncIterator[str]:
                for j in range(20):
                    yield f"{i}:{j};"
                    await trio.lowlevel.checkpoint()  # let the other senders try to get in

            await ws.send_fragments(pieces())

        async def whole(i: int) -> None:
            for _ in range(5):
                await ws.send_text(f"whole {i}")

        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(fragmented, i)
                nursery.start_soon(whole, i)
        await ws.send_text("end")
        await ws.receive()

    async with open_test_client(handler) as client:
        received = []
        while (message := await client.receive_text(timeout=5)) != "end":
            received.append(message)
    fragmented = sorted(m for m in received if not m.startswith("whole"))
    assert fragmented == sorted("".join(f"{i}:{j};" for j in range(20)) for i in range(10))
    assert len(received) == 10 + 50


async def test_sends_after_close_raise_disconnect() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws.close(1000, "bye")
        with pytest.raises(WebSocketDisconnect):
            await ws.send_text("late")
        await ws.close()  # a second close does nothing

    async with open_test_client(handler) as client:
        assert await client.wait_closed(timeout=1) == 1000
        with pytest.raises(WebSocketDisconnect):
            await client.send_text("late too")


async def test_messages_before_close_are_all_delivered() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        for i in range(100):
            await ws.send_text(str(i))
        await ws.close(1000)

    async with open_test_client(handler) as client:
        got = []
        with pytest.raises(WebSocketDisconnect):
            while True:
                got.append(await client.receive_text(timeout=1))
    assert got == [str(i) for i in range(100)]


async def test_keepalive_times_out_with_1011(autojump_clock: trio.testing.MockClock) -> None:
    """A peer that never answers pings: closed with 1011 after ping_interval + ping_timeout."""

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws.receive()

    options = WebSocketOptions(ping_interval=5, ping_timeout=3, close_timeout=1)
    server = WebSocketServer(handler, options)
    peer, server_side = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_stream, server_side)
        request, _ = build_request("test", "/")
        await peer.send_all(request)
        received = b""
        while b"\r\n\r\n" not in received:
            received += await peer.receive_some()
        start = trio.current_time()
        # A raw client: it reads the server's frames but never answers a ping.
        conn = Connection(Role.CLIENT)
        events: list[object] = []
        while not any(isinstance(e, CloseReceived) for e in events):
            data = await peer.receive_some()
            assert data, "stream ended before the close frame"
            events += conn.receive_data(data)
        elapsed = trio.current_time() - start
    assert [type(e) for e in events] == [Ping, CloseReceived]
    assert events[-1] == CloseReceived(1011, "keepalive ping timeout")
    assert 8 <= elapsed < 9


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_close_does_not_wait_for_a_handler_that_never_reads(
    autojump_clock: trio.testing.MockClock,
) -> None:
    closed: list[float] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await trio.sleep(1)  # the client fills the queue meanwhile
        start = trio.current_time()
        await ws.close(1000)
        closed.append(trio.current_time() - start)

    async with open_test_client(handler, max_queue=2, close_timeout=5) as client:
        for _ in range(20):
            await client.send_text("x" * 1000)
        assert await client.wait_closed(timeout=30) == 1000
    assert closed[0] < 5


async def test_pytest_plugin_fixture(ws_test_client: object) -> None:
    assert ws_test_client is open_test_client
    async with open_test_client(echo) as client:
        await client.send_text("via the plugin")
        assert await client.receive_text(timeout=1) == "via the plugin"


async def test_peer_close_completes_while_the_handler_is_not_reading(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The reader answers the peer's close by itself; the handler, busy elsewhere, finds out on its
    next send, and every message that came before the close is still there to receive."""
    outcome: list[object] = []

    async def busy(ws: WebSocket) -> None:
        await ws.accept()
        await trio.sleep(4)  # not reading (for less than close_timeout: then it would be cancelled)
        outcome.append(await ws.receive_text())
        with pytest.raises(WebSocketDisconnect) as info:
            await ws.send_text("too late")
        outcome.append(info.value.code)

    async with open_test_client(busy, close_timeout=5) as client:
        await client.send_text("before close")
        start = trio.current_time()
        await client.close(4002)
        outcome.append(trio.current_time() - start < 5)
    assert outcome == [True, "before close", 4002]


@pytest.mark.parametrize(("handler_sleeps", "expected_messages"), [(2, 50), (20, 0)])
async def test_peer_close_behind_a_full_queue_completes_within_close_timeout(
    autojump_clock: trio.testing.MockClock, handler_sleeps: float, expected_messages: int
) -> None:
    """The queue (2 messages) is full and the handler is not reading: the reader reads ahead, sees
    the peer's close and answers it at once. A handler that wakes within close_timeout still gets
    every message; one that is still asleep close_timeout after the close is cancelled."""
    received: list[str] = []
    codes: list[int] = []

    async def sleepy(ws: WebSocket) -> None:
        await ws.accept()
        await trio.sleep(handler_sleeps)
        try:
            while True:
                received.append(await ws.receive_text())
        except WebSocketDisconnect as exc:
            codes.append(exc.code)

    async with open_test_client(sleepy, max_queue=2, close_timeout=5) as client:
        for i in range(50):
            await client.send_text(str(i))
        start = trio.current_time()
        await client.close(1000)
        assert trio.current_time() - start < 1  # answered at once, not after the handler
    assert client.close_code == 1000
    assert received == [str(i) for i in range(expected_messages)]
    assert codes == ([1000] if expected_messages else [])


async def test_send_to_a_peer_that_stops_reading_waits_and_cancels_cleanly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Over a lockstep stream the writer blocks until the peer reads. A send returns once its frame is
    queued; past ``write_high_water`` bytes queued, the next send waits. Cancelled while waiting, it
    has queued nothing and the connection stays usable: the peer, reading again, gets the first
    message whole and then the next one, never the cancelled one."""
    outcome: list[object] = []
    waited = trio.Event()

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_bytes(b"x" * 100_000)  # queued: the peer is not reading
        with trio.move_on_after(1) as scope:
            await ws.send_text("never")  # 100,000 bytes queued > write_high_water: it waits
        outcome.extend([scope.cancelled_caught, ws.is_closed])
        waited.set()
        await ws.send_text("after")
        await ws.receive()

    server = WebSocketServer(handler, WebSocketOptions(ping_interval=None, close_timeout=1))
    peer, server_side = trio.testing.lockstep_stream_pair()
    client = Connection(Role.CLIENT)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_stream, server_side)
        await peer.send_all(build_request("test", "/")[0])
        head = b""
        while b"\r\n\r\n" not in head:
            head += await peer.receive_some()
        head, _, rest = head.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        events = list(client.receive_data(rest + await peer.receive_some(10)))  # then stop reading
        await waited.wait()
        while len(events) < 2:
            events.extend(client.receive_data(await peer.receive_some()))
        await peer.send_all(client.send_close(1000))
        await peer.aclose()
    assert outcome == [True, False]
    assert [e.data for e in events if isinstance(e, (BytesMessage, TextMessage))] == [b"x" * 100_000, "after"]
    assert len(events) == 2


async def test_disconnect_inside_the_handlers_own_nursery_is_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        async with trio.open_nursery() as nursery:  # raises ExceptionGroup([WebSocketDisconnect])
            nursery.start_soon(ws.receive_text)
            nursery.start_soon(ws.ping)

    with caplog.at_level(logging.ERROR, logger="trio_ws"):
        async with open_test_client(handler) as client:
            await client.close(1000)
    assert client.close_code == 1000
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_client_request_is_what_it_sent() -> None:
    async with open_test_client(echo, "/p", query_string="q=1", headers=[("X-Mine", "1")]) as client:
        request = client.ws.request
        assert request is not None
        assert request.target == "/p?q=1"
        assert request.headers["x-mine"] == "1"
        assert request.headers["sec-websocket-version"] == "13"
        assert "server" not in request.headers  # not the server's response headers
