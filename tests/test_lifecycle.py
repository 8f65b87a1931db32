"""A connection owns its tasks: once it is closed, its handler has close_timeout to return, then it
is cancelled; the server lists only open connections; shutdown and the test client always end.
And the flow control between the reader, the queue, the read-ahead and the writer loses nothing
under load."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from trio_ws import (
    WebSocket,
    WebSocketDisconnect,
    WebSocketOptions,
    WebSocketServer,
    open_websocket,
    open_websocket_server,
)
from trio_ws.client import ClientHandshake, connect_websocket, run_client
from trio_ws.testing import open_test_client


async def connect(server: WebSocketServer, nursery: trio.Nursery, path: str = "/") -> ClientHandshake:
    """A client handshake with ``server`` over an in-memory stream pair (served in ``nursery``)."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    nursery.start_soon(server.serve_stream, server_stream)
    return await connect_websocket(client_stream, "test", path, server.options)


async def test_a_handler_that_ignores_a_closed_connection_is_cancelled_after_close_timeout(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """``await ws.accept(); await trio.sleep_forever()``: when the client closes, the connection
    leaves ``server.connections`` at once and the handler (with the tasks it started in
    ``ws.nursery``) is cancelled close_timeout later, logged once at INFO with its path."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    started = trio.Event()
    outcome: list[str] = []

    async def child() -> None:
        try:
            await trio.sleep_forever()
        finally:
            outcome.append("child ended")

    async def stubborn(ws: WebSocket) -> None:
        await ws.accept()
        ws.nursery.start_soon(child)
        started.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            outcome.append(f"handler cancelled at {trio.current_time() - closed_at:.1f}")
            raise

    closed_at = 0.0
    server = WebSocketServer(stubborn, WebSocketOptions(close_timeout=3, ping_interval=None))
    with trio.fail_after(60):  # (simulated time)
        async with trio.open_nursery() as nursery:
            async with run_client(await connect(server, nursery, "/stubborn")) as client:
                await started.wait()
                assert len(server.connections) == 1
                closed_at = trio.current_time()
                await client.close()
            await trio.testing.wait_all_tasks_blocked()
            assert server.connections == set()  # closed: not listed, though its handler still runs
            assert outcome == []
            await trio.sleep(3.5)
            assert sorted(outcome) == ["child ended", "handler cancelled at 3.0"]
    cancelled = [r for r in caplog.records if "still running" in r.getMessage()]
    assert len(cancelled) == 1
    assert cancelled[0].levelno == logging.INFO
    assert "/stubborn" in cancelled[0].getMessage()


async def test_a_handler_that_returns_in_time_is_not_cancelled(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Cleanup after the peer has gone may take up to close_timeout."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    done: list[str] = []

    async def tidy(ws: WebSocket) -> None:
        await ws.accept()
        try:
            await ws.receive()
        except WebSocketDisconnect:
            await trio.sleep(2.5)  # saving state somewhere
            done.append("saved")

    async with open_test_client(tidy, close_timeout=3) as client:
        await client.close()
    assert done == ["saved"]
    assert not [r for r in caplog.records if "still running" in r.getMessage()]


async def test_leaving_the_test_client_ends_even_if_the_handler_never_returns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The block's exit: closing handshake, then close_timeout, then the handler is cancelled."""

    async def forever(ws: WebSocket) -> None:
        await ws.accept()
        await trio.sleep_forever()

    with trio.fail_after(60):  # (simulated time: without the rule it hangs for ever)
        start = trio.current_time()
        async with open_test_client(forever, close_timeout=5) as client:
            await client.send_text("hello")
        assert trio.current_time() - start == pytest.approx(5, abs=0.5)


async def test_shutdown_returns_as_soon_as_every_handler_has_returned() -> None:
    """50 clients answer the 1001 at once, their handlers are in ``iter_text()``: the shutdown
    takes well under a second (real time), not close_timeout."""
    ready = 0
    all_ready = trio.Event()

    async def reader(ws: WebSocket) -> None:
        nonlocal ready
        await ws.accept()
        ready += 1
        if ready == 50:
            all_ready.set()
        async for _ in ws.iter_text():
            pass

    codes: list[int] = []

    async def client(port: int) -> None:
        async with open_websocket("127.0.0.1", port) as ws:
            try:
                await ws.receive()
            except WebSocketDisconnect as exc:
                codes.append(exc.code)

    async with (
        trio.open_nursery() as nursery,
        open_websocket_server(reader, "127.0.0.1", 0, close_timeout=10) as server,
    ):
        for _ in range(50):
            nursery.start_soon(client, server.port)
        with trio.fail_after(10):
            await all_ready.wait()
        start = trio.current_time()
        await server.aclose()
        elapsed = trio.current_time() - start
    assert codes == [1001] * 50
    assert elapsed < 1.0


async def test_shutdown_is_bounded_by_close_timeout_after_the_last_close(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Handlers that never return: the connections close at once (the clients answer the 1001),
    the handlers are cancelled close_timeout after, and the shutdown returns then."""
    started = 0
    all_started = trio.Event()

    async def forever(ws: WebSocket) -> None:
        nonlocal started
        await ws.accept()
        started += 1
        if started == 5:
            all_started.set()
        await trio.sleep_forever()

    server = WebSocketServer(forever, WebSocketOptions(close_timeout=4, ping_interval=None))

    async def client(nursery: trio.Nursery) -> None:
        async with run_client(await connect(server, nursery)) as ws:
            with pytest.raises(WebSocketDisconnect):
                await ws.receive()

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(client, nursery)
        await all_started.wait()
        start = trio.current_time()
        await server.aclose()
        assert trio.current_time() - start == pytest.approx(4, abs=0.5)
        assert server.connections == set()


async def test_echoes_never_stop_under_load() -> None:
    """100 connections to an echo handler, each keeping 64 binary messages of 1 KiB in flight and
    sending 16 more each time 16 echoes came back: every message is answered. (A message parsed
    by the read-ahead just as the delivery caught up used to be dropped: the connection stalled.)"""

    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        async for message in ws.iter_bytes():
            await ws.send_bytes(message)

    unanswered: list[int] = []

    async def client(port: int) -> None:
        message = b"x" * 1024
        async with open_websocket("127.0.0.1", port, compression=None, ping_interval=None) as ws:
            sent = received = 0
            for _ in range(64):
                await ws.send_bytes(message)
                sent += 1
            with trio.move_on_after(20):
                while received < sent:
                    await ws.receive_bytes()
                    received += 1
                    if received % 16 == 0 and sent < 1024:
                        for _ in range(16):
                            await ws.send_bytes(message)
                            sent += 1
            unanswered.append(sent - received)

    async with (
        open_websocket_server(echo, "127.0.0.1", 0, compression=None, ping_interval=None) as server,
        trio.open_nursery() as nursery,
    ):
        for _ in range(100):
            nursery.start_soon(client, server.port)
    assert unanswered == [0] * 100
