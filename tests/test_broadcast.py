"""Rooms and broadcast in one process: membership, cleanup on every way a connection ends, and
stalled clients under each overflow policy while the others keep receiving on time."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

from trio_ws import (
    Hub,
    Overflow,
    Router,
    WebSocket,
    WebSocketDisconnect,
    open_websocket,
    open_websocket_server,
)
from trio_ws.testing import open_test_client


def chat_router(hub: Hub) -> Router:
    router = Router()

    @router.websocket("/rooms/{room}")
    async def room_handler(ws: WebSocket, room: str) -> None:
        await ws.accept()
        async with hub.subscribe(ws, room):
            await ws.send_text("joined")
            async for text in ws.iter_text():
                if text == "raise":
                    raise RuntimeError("handler failure")
                if text == "leave":
                    break
                await hub.publish(room, {"room": room, "text": text})
        # Out of the room, still connected.
        await ws.send_text("left")
        await ws.receive_text()

    return router


async def test_publish_reaches_the_room_only_and_membership_is_listed() -> None:
    hub = Hub()
    router = chat_router(hub)
    async with (
        open_test_client(router, "/rooms/a") as a1,
        open_test_client(router, "/rooms/a") as a2,
        open_test_client(router, "/rooms/b") as b1,
    ):
        for client in (a1, a2, b1):
            assert await client.receive_text(timeout=5) == "joined"
        assert hub.rooms == {"a": 2, "b": 1}
        assert hub.count("a") == 2
        assert len(hub.members("a")) == 2
        await a1.send_text("hello a")
        assert await a1.receive_json(timeout=5) == {"room": "a", "text": "hello a"}
        assert await a2.receive_json(timeout=5) == {"room": "a", "text": "hello a"}
        await hub.publish("b", b"\x00binary")
        await hub.publish("b", "text")
        assert await b1.receive_bytes(timeout=5) == b"\x00binary"
        assert await b1.receive_text(timeout=5) == "text"
        await hub.publish("nobody-here", "x")  # no members: nothing happens
        assert hub.stats.published == 4
        assert hub.stats.delivered == 4


@pytest.mark.parametrize("ending", ["leave", "client-close", "handler-raises", "client-vanishes", "shutdown"])
async def test_membership_is_cleaned_up_on_every_way_a_connection_ends(ending: str) -> None:
    hub = Hub()
    router = chat_router(hub)
    async with (
        open_websocket_server(router, "127.0.0.1", 0) as server,
        open_websocket("127.0.0.1", server.port, "/rooms/r") as stays,
    ):
        assert await stays.receive_text() == "joined"
        stream = None
        try:
            if ending == "client-vanishes":  # the TCP connection just goes away
                stream = await trio.open_tcp_stream("127.0.0.1", server.port)
                await stream.send_all(
                    b"GET /rooms/r HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                )
                data = b""
                while b"joined" not in data:
                    data += await stream.receive_some()
                assert hub.count("r") == 2
                stream.socket.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                await stream.aclose()  # RST
            else:
                async with open_websocket("127.0.0.1", server.port, "/rooms/r") as goes:
                    assert await goes.receive_text() == "joined"
                    assert hub.count("r") == 2
                    if ending == "leave":
                        await goes.send_text("leave")
                        assert await goes.receive_text() == "left"  # still connected, out of the room
                        await hub.publish("r", "after leaving")
                        assert await stays.receive_text() == "after leaving"
                    elif ending == "handler-raises":
                        await goes.send_text("raise")
                        with pytest.raises(WebSocketDisconnect) as info:
                            await goes.receive_text()
                        assert info.value.code == 1011
                    elif ending == "shutdown":
                        with trio.fail_after(10):
                            await server.aclose()
                        assert hub.rooms == {}
                        return
                    # client-close: leaving the block closes with 1000
        finally:
            if stream is not None:
                await stream.aclose()
        with trio.fail_after(5):
            while hub.count("r") != 1:  # cleanup runs in the server's tasks: let them run
                await trio.testing.wait_all_tasks_blocked(cushion=0.01)
        [member] = hub.members("r")
        assert not member.is_closed  # the one that stays
        await hub.publish("r", "still here")
        assert await stays.receive_text() == "still here"


async def stalled_client(port: int, path: str) -> trio.SocketStream:
    """A client that completes the handshake and then never reads (tiny receive buffer)."""
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", port))
    stream = trio.SocketStream(sock)
    await stream.send_all(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    data = b""
    while b"joined" not in data:
        data += await stream.receive_some(1)
    return stream


@contextlib.asynccontextmanager
async def stalled_room(overflow: Overflow) -> AsyncIterator[tuple[Hub, Any, list[Any], trio.SocketStream]]:
    hub = Hub(queue_size=8, overflow=overflow)
    async with (
        open_websocket_server(chat_router(hub), "127.0.0.1", 0) as server,
        contextlib.AsyncExitStack() as stack,
    ):
        readers = []
        for _ in range(3):
            ws = await stack.enter_async_context(open_websocket("127.0.0.1", server.port, "/rooms/s"))
            assert await ws.receive_text() == "joined"
            readers.append(ws)
        stalled = await stalled_client(server.port, "/rooms/s")
        try:
            yield hub, server, readers, stalled
        finally:
            await stalled.aclose()


@pytest.mark.parametrize("overflow", list(Overflow))
async def test_a_stalled_client_never_holds_up_the_publisher_or_the_others(overflow: Overflow) -> None:
    async with stalled_room(overflow) as (hub, _, readers, _stalled):
        payload = "x" * 16384
        slowest_publish = 0.0
        for i in range(300):  # ~5 MB: far more than the stalled socket's buffers take
            start = time.monotonic()
            await hub.publish("s", f"{i:04d}{payload}")
            slowest_publish = max(slowest_publish, time.monotonic() - start)
            for ws in readers:  # every reader gets every message, in order, on time
                with trio.fail_after(2):
                    assert (await ws.receive_text())[:4] == f"{i:04d}"
        assert slowest_publish < 0.1
        stats = hub.stats
        if overflow is Overflow.DROP_OLDEST:
            assert stats.dropped_oldest > 0
            assert hub.count("s") == 4
        elif overflow is Overflow.DROP_NEWEST:
            assert stats.dropped_newest > 0
            assert hub.count("s") == 4
        else:
            assert stats.closed == 1
            assert hub.count("s") == 3  # the stalled one is out


async def test_a_room_policy_overrides_the_hub_default() -> None:
    hub = Hub(queue_size=1000, overflow="drop_oldest")
    hub.configure_room("strict", queue_size=4, overflow=Overflow.CLOSE, close_code=1008)
    async with open_websocket_server(chat_router(hub), "127.0.0.1", 0) as server:
        stalled = await stalled_client(server.port, "/rooms/strict")
        async with stalled:
            for i in range(300):
                await hub.publish("strict", f"{i}" + "y" * 16384)
            assert hub.stats.closed == 1
            assert hub.count("strict") == 0


async def test_one_frame_is_encoded_for_every_uncompressed_member() -> None:
    hub = Hub()
    seen: list[bytes] = []
    async with (
        open_websocket_server(chat_router(hub), "127.0.0.1", 0, compression=None) as server,
        open_websocket("127.0.0.1", server.port, "/rooms/f") as one,
        open_websocket("127.0.0.1", server.port, "/rooms/f") as two,
    ):
        for ws in (one, two):
            assert await ws.receive_text() == "joined"
        original = WebSocket.send_prepared  # what the hub's sender tasks call

        async def spy(self: WebSocket, message: Any, *, direct: bool = False) -> None:
            seen.append(message.frame)
            await original(self, message, direct=direct)

        WebSocket.send_prepared = spy  # type: ignore[method-assign,assignment]
        try:
            await hub.publish("f", {"n": 1})
            assert await one.receive_json() == {"n": 1}
            assert await two.receive_json() == {"n": 1}
        finally:
            WebSocket.send_prepared = original  # type: ignore[method-assign]
    assert len(seen) == 2
    assert seen[0] is seen[1]  # the same bytes object: encoded once


async def test_subscribing_before_accept_is_a_clear_error_and_registers_nothing() -> None:
    hub = Hub()
    errors: list[Exception] = []

    async def handler(ws: WebSocket) -> None:
        try:
            async with hub.subscribe(ws, "early"):
                pass  # pragma: no cover
        except RuntimeError as exc:
            errors.append(exc)
        await ws.accept()
        async with hub.subscribe(ws, "early"):
            assert hub.count("early") == 1
            await ws.send_text("in")

    async with open_test_client(handler) as client:
        assert await client.receive_text(timeout=5) == "in"
    assert "not open" in str(errors[0])
    assert hub.rooms == {}


class _Unreachable:
    """A backend whose publications time out, with nothing to say."""

    async def run(self, hub: Hub, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def publish(self, room: str, message: object) -> None:
        await trio.lowlevel.checkpoint()
        raise TimeoutError

    async def subscribe(self, rooms: object) -> None:
        await trio.lowlevel.checkpoint()

    def unsubscribe(self, rooms: object) -> None:
        pass


async def test_a_failed_publication_is_counted_and_logged_with_what_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Hub(_Unreachable()) as hub:
        assert await hub.publish("r", "x") is None
    assert (hub.stats.publish_errors, hub.stats.publish_timeouts) == (1, 1)
    assert [r.getMessage() for r in caplog.records] == ["publish to 'r' failed: TimeoutError"]
