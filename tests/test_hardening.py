"""Every buffer of a connection has a bound, against peers that send and never read: pongs the
peer's pings make us send, and floods of empty or tiny messages to a handler that does not receive.
In each case the reader stops reading, so TCP pushes back on the peer, and memory stays bounded."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from helpers import frame, upgraded

from trio_ws import WebSocket, open_websocket_server
from trio_ws.connection._io import READ_SIZE

PING, TEXT = 9, 1


async def flood(stream: trio.SocketStream, chunk: bytes, limit: int) -> int:
    """Send ``chunk`` again and again, never reading, until ``limit`` bytes or until TCP pushes
    back for good (every task blocked); the bytes sent."""
    sent = 0

    async def send() -> None:
        nonlocal sent
        while sent < limit:
            await stream.send_all(chunk)
            sent += len(chunk)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        await trio.testing.wait_all_tasks_blocked(cushion=0.3)
        nursery.cancel_scope.cancel()
    return sent


async def test_pongs_to_a_peer_that_never_reads_are_bounded_by_write_high_water() -> None:
    """A peer sends pings and never reads: the pongs count against ``write_high_water``, and while
    they cannot be written the reader stops reading (before, every ping was answered into the
    outbox: 1,000,000 pings took the server from 29 to 271 MiB)."""
    connections: list[WebSocket] = []

    async def idle(ws: WebSocket) -> None:
        await ws.accept()
        connections.append(ws)
        await trio.sleep_forever()

    limit = 128 * 2**20
    async with open_websocket_server(idle, "127.0.0.1", 0, ping_interval=None, close_timeout=1) as server:
        stream = await upgraded(server.port)
        sent = await flood(stream, frame(PING, b"p" * 125) * 1000, limit)
        (ws,) = connections
        assert sent < 32 * 2**20  # TCP pushed back long before the limit
        # write_high_water, plus the pongs of the one read that went over it
        assert ws.buffered_amount <= ws.options.write_high_water + READ_SIZE
        await trio.aclose_forcefully(stream)


@pytest.mark.parametrize("payload", [b"", b"x"])
async def test_a_flood_of_empty_or_tiny_messages_is_bounded(payload: bytes) -> None:
    """A handler that never receives, a peer that sends millions of empty (or one-byte) messages:
    every message costs something against the read-ahead's bound, so the reader stops and TCP
    pushes back (before, an empty message counted 0: 3,000,000 of them took 160 MiB)."""
    connections: list[WebSocket] = []

    async def deaf(ws: WebSocket) -> None:
        await ws.accept()
        connections.append(ws)
        await trio.sleep_forever()

    limit = 3_000_000 * len(frame(TEXT, payload))
    async with open_websocket_server(deaf, "127.0.0.1", 0, ping_interval=None, close_timeout=1) as server:
        stream = await upgraded(server.port)
        sent = await flood(stream, frame(TEXT, payload) * 10_000, limit)
        (ws,) = connections
        assert sent < limit
        # The queue (16), the read-ahead (1 MiB at 64 bytes a message at least), one read's worth.
        assert ws.pending_messages <= 16 + 2**20 // 64 + READ_SIZE // len(frame(TEXT, payload)) + 1
        await trio.aclose_forcefully(stream)


@pytest.mark.parametrize("held_by", ["pongs", "messages"])
async def test_a_reader_held_back_when_the_server_shuts_down_ends_quietly(
    held_by: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The reader waits (for room for its pongs, or for the handler to take messages) when the
    shutdown's close times out and the stream is closed under it: it ends without an error (before,
    it went on to wait on the closed socket, and the server logged ``connection failed`` with a
    ``ValueError``)."""
    connections: list[WebSocket] = []

    async def deaf(ws: WebSocket) -> None:
        await ws.accept()
        connections.append(ws)
        await trio.sleep_forever()

    for _ in range(3):  # (the reader's last read emptied the socket in most runs, not all)
        server_cm = open_websocket_server(deaf, "127.0.0.1", 0, ping_interval=None, close_timeout=0.05)
        async with server_cm as server:
            stream = await upgraded(server.port)
            if held_by == "pongs":
                await flood(stream, frame(PING, b"p" * 125) * 1000, 128 * 2**20)
            else:
                await stream.send_all(frame(TEXT, b"m") * 100)
            await trio.testing.wait_all_tasks_blocked()
            assert connections
        await trio.aclose_forcefully(stream)
        connections.clear()
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []
