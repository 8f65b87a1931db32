"""Streaming receives: ``ws.receive_streaming()`` gives a message's chunks (one per frame) as they
arrive, with the limits of whole messages; the sans-I/O core's ``Connection.stream_message()``
under it. Through the test client, a real server and client, and raw frames."""

from __future__ import annotations

import itertools
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from helpers import frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_ws import (
    CloseCode,
    WebSocket,
    WebSocketDisconnect,
    WebSocketOptions,
    WebSocketServer,
    open_websocket,
    open_websocket_server,
)
from trio_ws.protocol import (
    BytesMessage,
    CloseReceived,
    Connection,
    MessageChunk,
    PerMessageDeflate,
    ResponseParser,
    Role,
    TextMessage,
    build_request,
)
from trio_ws.testing import open_test_client

TEXT, BINARY, CONT = 1, 2, 0


def server(**kwargs: Any) -> Connection:
    return Connection(Role.SERVER, **kwargs)


def deflated(data: bytes) -> bytes:
    """``data`` compressed as one permessage-deflate message (RFC 7692 §7.2.1)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


# ---------------------------------------------------------------- the sans-I/O core


def test_a_streamed_message_comes_in_one_chunk_per_frame_and_the_next_one_whole() -> None:
    conn = server()
    assert conn.stream_message() is None  # nothing of it yet
    wire = frame(TEXT, b"one", fin=False) + frame(CONT, b"two", fin=False) + frame(CONT, b"three")
    wire += frame(TEXT, b"next", fin=False) + frame(CONT, b"!")
    assert conn.receive_data(wire) == [
        MessageChunk("one", False),
        MessageChunk("two", False),
        MessageChunk("three", True),
        TextMessage("next!"),
    ]
    assert conn.messages_received == 2
    assert conn.bytes_received == len("onetwothree") + len("next!")


def test_chunks_follow_the_frames_whatever_the_reads() -> None:
    """Fed byte by byte, a frame still makes one chunk (its reads are joined), and the protocol
    holds only the frame in progress."""
    conn = server()
    conn.stream_message()
    wire = frame(BINARY, b"a" * 300, fin=False) + frame(CONT, b"b" * 200)
    events = []
    for i in range(len(wire)):
        events += conn.receive_data(wire[i : i + 1])
        assert conn.buffered_bytes <= 300 + 14
    assert events == [MessageChunk(b"a" * 300, False), MessageChunk(b"b" * 200, True)]


def test_asked_in_the_middle_it_returns_what_came_so_far() -> None:
    conn = server()
    assert conn.receive_data(frame(BINARY, b"ab", fin=False) + frame(CONT, b"cd", fin=False)) == []
    assert conn.buffered_bytes == 4
    assert conn.stream_message() == b"abcd"
    assert conn.buffered_bytes == 0  # handed over
    assert conn.receive_data(frame(CONT, b"ef")) == [MessageChunk(b"ef", True)]


def test_a_message_in_one_frame_is_one_final_chunk() -> None:
    conn = server()
    conn.stream_message()
    assert conn.receive_data(frame(BINARY, b"whole") + frame(TEXT, b"after")) == [
        MessageChunk(b"whole", True),
        TextMessage("after"),
    ]


@pytest.mark.parametrize("by_byte", [False, True])
def test_a_character_split_across_frames_comes_whole_in_the_later_chunk(by_byte: bool) -> None:
    conn = server()
    conn.stream_message()
    euro = "€".encode()  # 3 bytes
    wire = frame(TEXT, b"caf\xc3", fin=False) + frame(CONT, b"\xa9 ", fin=False)
    wire += b"".join(frame(CONT, euro[i : i + 1], fin=i == 2) for i in range(3))
    steps = [wire[i : i + 1] for i in range(len(wire))] if by_byte else [wire]
    events = [event for step in steps for event in conn.receive_data(step)]
    assert events == [
        MessageChunk("caf", False),
        MessageChunk("é ", False),
        MessageChunk("", False),  # a frame of part of a character: an empty chunk, never a broken one
        MessageChunk("", False),
        MessageChunk("€", True),
    ]


def test_invalid_utf8_in_a_streamed_message_fails_with_1007_after_the_valid_chunks() -> None:
    conn = server()
    conn.stream_message()
    events = conn.receive_data(frame(TEXT, b"fine", fin=False) + frame(CONT, b"\xff", fin=False))
    assert events == [MessageChunk("fine", False)]
    assert conn.failure is not None and conn.failure.code == CloseCode.INVALID_FRAME_PAYLOAD_DATA
    conn = server()
    conn.stream_message()
    conn.receive_data(frame(TEXT, b"cut \xc3", fin=False) + frame(CONT, b""))  # ends inside a character
    assert conn.failure is not None and conn.failure.code == CloseCode.INVALID_FRAME_PAYLOAD_DATA


def test_max_message_size_bounds_the_whole_streamed_message() -> None:
    conn = server(max_message_size=10)
    conn.stream_message()
    events = conn.receive_data(
        frame(BINARY, b"12345", fin=False) + frame(CONT, b"67890", fin=False) + frame(CONT, b"x")
    )
    assert events == [MessageChunk(b"12345", False), MessageChunk(b"67890", False)]
    assert conn.failure is not None and conn.failure.code == CloseCode.MESSAGE_TOO_BIG


def test_a_compressed_message_is_decompressed_frame_by_frame() -> None:
    text = "".join(f"line {i}: {i * i} é\n" for i in range(3000)).encode()
    packed = deflated(text)
    third = len(packed) // 3
    wire = frame(TEXT, packed[:third], fin=False, rsv=4)
    wire += frame(CONT, packed[third : 2 * third], fin=False) + frame(CONT, packed[2 * third :])
    conn = server(extension=PerMessageDeflate())
    conn.stream_message()
    events = conn.receive_data(wire)
    assert all(isinstance(e, MessageChunk) for e in events) and len(events) == 3
    chunks = [e.data for e in events if isinstance(e, MessageChunk)]
    assert all(isinstance(c, str) and c for c in chunks)
    assert "".join(map(str, chunks)) == text.decode()
    assert conn.bytes_received == len(text)
    # The limit holds for the decompressed total.
    small = server(extension=PerMessageDeflate(), max_message_size=len(text) - 1)
    small.stream_message()
    small.receive_data(wire)
    assert small.failure is not None and small.failure.code == CloseCode.MESSAGE_TOO_BIG


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(st.text(max_size=60), st.binary(max_size=60)),
    st.lists(st.integers(0, 60), max_size=6),
    st.integers(0, 4),
    st.integers(1, 9),
)
def test_streamed_chunks_are_the_frames_of_the_message_whatever_the_splits(
    message: str | bytes, cuts: list[int], asked_after: int, read: int
) -> None:
    """Any message in any fragmentation, read in any chunking, asked for after any number of its
    frames: the chunks (with what came before the request) join to the message, one chunk per frame
    after the request, none of them with a broken character."""
    payload = message.encode() if isinstance(message, str) else message
    bounds = sorted({0, len(payload), *(c for c in cuts if c < len(payload))})
    pieces = [payload[a:b] for a, b in itertools.pairwise(bounds)] or [b""]
    opcode = TEXT if isinstance(message, str) else BINARY
    frames = [
        frame(opcode if i == 0 else CONT, piece, fin=i == len(pieces) - 1) for i, piece in enumerate(pieces)
    ]
    conn = server()
    early = b"".join(frames[:asked_after])
    events = [e for i in range(0, len(early), read) for e in conn.receive_data(early[i : i + read])]
    asked_after = min(asked_after, len(frames))
    so_far = conn.stream_message()
    late = b"".join(frames[asked_after:])
    events += [e for i in range(0, len(late), read) for e in conn.receive_data(late[i : i + read])]
    assert conn.failure is None
    if asked_after == len(frames):  # the message was complete before the request
        whole = TextMessage(message) if isinstance(message, str) else BytesMessage(message)
        assert so_far is None and events == [whole]
        return
    assert all(isinstance(e, MessageChunk) for e in events)
    assert len(events) == len(frames) - asked_after
    assert [e.final for e in events if isinstance(e, MessageChunk)][-1]
    chunks = [e.data for e in events if isinstance(e, MessageChunk)]
    if so_far is not None:
        chunks.insert(0, so_far)
    assert all(type(c) is type(message) for c in chunks)
    assert b"".join(c.encode() if isinstance(c, str) else c for c in chunks) == payload
    assert conn.messages_received == 1 and conn.buffered_bytes == 0


# ----------------------------------------------------------- through a connection


async def test_three_fragments_are_three_chunks_the_first_before_the_last_is_sent() -> None:
    got_first = trio.Event()
    chunks: list[str | bytes] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        async for chunk in ws.receive_streaming():
            chunks.append(chunk)
            got_first.set()
        await ws.send_text("done")

    async def fragments() -> AsyncIterator[str]:
        yield "one"
        yield "two"  # "one" has gone out when the next fragment is asked for
        await got_first.wait()  # the receiver has "one": "two" and "three" are not sent yet
        assert chunks == ["one"]
        yield "three"

    async with open_test_client(handler) as client:
        await trio.testing.wait_all_tasks_blocked()  # the handler waits for a message
        with trio.fail_after(5):  # it would hang if the first chunk waited for the whole message
            await client.ws.send_fragments(fragments())
        assert await client.receive_text(timeout=5) == "done"
    assert chunks == ["one", "two", "three"]


async def test_a_message_that_arrived_whole_is_one_chunk_and_others_stay_whole() -> None:
    sent = trio.Event()
    results: list[object] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await sent.wait()
        await trio.testing.wait_all_tasks_blocked()  # the reader has queued both messages
        assert ws.pending_messages == 2
        results.append([chunk async for chunk in ws.receive_streaming()])
        results.append(await ws.receive())
        await ws.send_text("done")

    async with open_test_client(handler) as client:
        await client.ws.send_fragments([b"a", b"b", b"c"])
        await client.ws.send_fragments(["x", "y"])
        sent.set()
        assert await client.receive_text(timeout=5) == "done"
    assert results == [[b"abc"], "xy"]


async def test_leaving_early_drops_the_rest_and_the_next_receive_gets_the_next_message() -> None:
    got_first = trio.Event()
    results: list[object] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        stream = ws.receive_streaming()
        async for chunk in stream:
            results.append(chunk)
            got_first.set()
            break
        results.append(await ws.receive())  # the rest of the first message is dropped
        with pytest.raises(RuntimeError, match="dropped"):
            await stream.__anext__()
        # Again, the next receive being a stream: it streams the next message.
        async for chunk in ws.receive_streaming():
            results.append(chunk)
            break
        results.append([chunk async for chunk in ws.receive_streaming()])
        await ws.send_text("done")

    async def fragments(*parts: str, wait: bool = False) -> AsyncIterator[str]:
        for i, part in enumerate(parts):
            yield part
            if wait and i == 1:
                await got_first.wait()

    async with open_test_client(handler) as client:
        await trio.testing.wait_all_tasks_blocked()  # the handler waits for a message
        await client.ws.send_fragments(fragments("a1", "a2", "a3", wait=True))
        await client.send_text("B")
        await client.ws.send_fragments(["c1", "c2"])
        await client.send_text("D")
        assert await client.receive_text(timeout=5) == "done"
    # The third message may have arrived whole before its stream began: one chunk, then "D".
    assert results[:2] == ["a1", "B"]
    assert results[2] in ("c1", "c1c2")
    assert results[3] == ["D"]


async def test_a_stream_cancelled_before_its_first_chunk_loses_nothing() -> None:
    """Asked for and cancelled before any chunk: a plain receive() gets the message whole. A
    receive() cancelled half-way through joining it keeps what it took for the next receive."""
    ready = [trio.Event(), trio.Event()]
    step = trio.Event()
    results: list[object] = []

    async def wait_for_a_chunk(ws: WebSocket) -> None:
        async for _ in ws.receive_streaming():
            raise AssertionError("cancelled before any chunk")

    async def cancelled(ws: WebSocket, receive: Any) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive, ws)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await cancelled(ws, wait_for_a_chunk)
        ready[0].set()
        results.append(await ws.receive())
        await cancelled(ws, wait_for_a_chunk)
        ready[1].set()
        await cancelled(ws, WebSocket.receive)  # takes "b1", waits for "b2": cancelled
        step.set()
        results.append([chunk async for chunk in ws.receive_streaming()])
        await ws.send_text("done")

    async def fragments() -> AsyncIterator[str]:
        yield "b1"
        yield "b2"  # "b1" has gone out
        await step.wait()
        yield "b3"

    async with open_test_client(handler) as client:
        await ready[0].wait()
        await client.ws.send_fragments(["a1", "a2", "a3"])
        await ready[1].wait()
        await client.ws.send_fragments(fragments())
        assert await client.receive_text(timeout=5) == "done"
    assert results == ["a1a2a3", ["b1", "b2", "b3"]]


async def test_two_tasks_receiving_at_once_is_an_immediate_error() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ws.receive_streaming().__anext__)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await ws.receive()
            with pytest.raises(trio.BusyResourceError):
                await ws.receive_streaming().__anext__()
            await ws.send_text("checked one")  # the first task then gets "first"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ws.receive)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await ws.receive_streaming().__anext__()
            await ws.send_text("checked two")

    async with open_test_client(handler) as client:
        assert await client.receive_text(timeout=5) == "checked one"
        await client.send_text("first")
        assert await client.receive_text(timeout=5) == "checked two"
        await client.send_text("second")


async def test_too_large_in_total_closes_with_1009_after_the_chunks_that_fit() -> None:
    chunks: list[str | bytes] = []
    codes: list[int] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            async for chunk in ws.receive_streaming():
                chunks.append(chunk)
        except WebSocketDisconnect as exc:
            codes.append(exc.code)

    async with open_test_client(handler, max_message_size=10) as client:
        await trio.testing.wait_all_tasks_blocked()  # the handler waits for a message
        await client.ws.send_fragments([b"12345", b"67890", b"x"])
        # (1009, or 1006 when the server has closed TCP before the client's close reply went out)
        assert await client.wait_closed(timeout=5) in (CloseCode.MESSAGE_TOO_BIG, CloseCode.ABNORMAL_CLOSURE)
    assert chunks == [b"12345", b"67890"]
    assert codes == [CloseCode.MESSAGE_TOO_BIG]


async def test_through_a_real_server_and_client_both_ways() -> None:
    got_first = trio.Event()

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        sizes = []
        async for chunk in ws.receive_streaming():
            sizes.append(len(chunk))
            got_first.set()
        await ws.send_json(sizes)
        assert await ws.receive() == "go"
        await ws.send_fragments([b"x" * 70000, b"y" * 10, b"z" * 70000])

    async def fragments() -> AsyncIterator[bytes]:
        yield b"a" * 100000
        yield b"b" * 100000
        await got_first.wait()
        yield b"c" * 100000

    chunks: list[str | bytes] = []

    async def collect(ws: WebSocket) -> None:
        async for chunk in ws.receive_streaming():
            chunks.append(chunk)

    async with (
        open_websocket_server(handler, "127.0.0.1", 0) as srv,
        open_websocket("127.0.0.1", srv.port) as ws,
    ):
        with trio.fail_after(5):
            await trio.testing.wait_all_tasks_blocked()  # the handler waits for a message
            await ws.send_fragments(fragments())
            assert await ws.receive_json() == [100000, 100000, 100000]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(collect, ws)
                await trio.testing.wait_all_tasks_blocked()  # the client waits for a message
                await ws.send_text("go")
    assert [(type(c), len(c)) for c in chunks] == [(bytes, 70000), (bytes, 10), (bytes, 70000)]
    assert chunks == [b"x" * 70000, b"y" * 10, b"z" * 70000]


# ------------------------------------------------------------------ raw frames


@asynccontextmanager
async def raw_peer(
    handler: Any, extensions: str | None = None, **options: Any
) -> AsyncIterator[tuple[trio.abc.Stream, WebSocketServer]]:
    """A server on an in-memory stream, and its peer after the opening handshake (frames by hand)."""
    options.setdefault("ping_interval", None)
    srv = WebSocketServer(handler, WebSocketOptions(**options))
    peer, server_side = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(srv.serve_stream, server_side)
        await peer.send_all(build_request("test", "/", extensions=extensions)[0])
        parser = ResponseParser()
        response = None
        while response is None:
            response = parser.receive_data(await peer.receive_some())
        assert response.status == 101
        assert parser.trailing == b""
        yield peer, srv


async def close_frame(peer: trio.abc.Stream) -> CloseReceived:
    conn = Connection(Role.CLIENT)
    while conn.close_received is None:
        data = await peer.receive_some()
        assert data, "the stream ended before the close frame"
        conn.receive_data(data)
    return conn.close_received


async def test_invalid_utf8_mid_stream_closes_with_1007_after_the_first_chunk() -> None:
    got_first = trio.Event()
    chunks: list[str | bytes] = []
    codes: list[int] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            async for chunk in ws.receive_streaming():
                chunks.append(chunk)
                got_first.set()
        except WebSocketDisconnect as exc:
            codes.append(exc.code)

    async with raw_peer(handler) as (peer, _):
        await trio.testing.wait_all_tasks_blocked()  # the handler waits for a message
        await peer.send_all(frame(TEXT, "déjà ".encode(), fin=False))
        await got_first.wait()
        await peer.send_all(frame(CONT, b"vu \xff", fin=False))
        assert (await close_frame(peer)).code == CloseCode.INVALID_FRAME_PAYLOAD_DATA
    assert chunks == ["déjà "]
    assert codes == [CloseCode.INVALID_FRAME_PAYLOAD_DATA]


async def test_text_split_inside_a_character_through_a_connection() -> None:
    got_first = trio.Event()
    chunks: list[str | bytes] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        async for chunk in ws.receive_streaming():
            chunks.append(chunk)
            got_first.set()
        await ws.close()

    async with raw_peer(handler) as (peer, _):
        await trio.testing.wait_all_tasks_blocked()  # the handler waits for a message
        await peer.send_all(frame(TEXT, b"caf\xc3", fin=False))
        await got_first.wait()
        await peer.send_all(frame(CONT, b"\xa9 au lait"))
        assert (await close_frame(peer)).code == CloseCode.NORMAL_CLOSURE
        await peer.send_all(frame(8, b"\x03\xe8"))
    assert chunks == ["caf", "é au lait"]


async def test_a_compressed_message_streams_through_a_connection() -> None:
    got_first = trio.Event()
    chunks: list[str | bytes] = []
    text = "".join(f"line {i}: the quick brown fox\n" for i in range(3000)).encode()
    packed = deflated(text)
    third = len(packed) // 3

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        assert ws.extensions and ws.extensions[0].startswith("permessage-deflate")
        async for chunk in ws.receive_streaming():
            chunks.append(chunk)
            got_first.set()
        await ws.close()

    async with raw_peer(handler, "permessage-deflate") as (peer, _):
        await trio.testing.wait_all_tasks_blocked()  # the handler waits for a message
        await peer.send_all(frame(TEXT, packed[:third], fin=False, rsv=4))
        await got_first.wait()
        rest = frame(CONT, packed[third : 2 * third], fin=False) + frame(CONT, packed[2 * third :])
        await peer.send_all(rest)
        assert (await close_frame(peer)).code == CloseCode.NORMAL_CLOSURE
        await peer.send_all(frame(8, b"\x03\xe8"))
    assert len(chunks) == 3 and all(isinstance(c, str) and c for c in chunks)
    assert "".join(map(str, chunks)) == text.decode()


async def test_chunks_waiting_count_against_the_queue_and_the_servers_budget() -> None:
    """A handler that takes one chunk and stops: the reader stops too (it read a fraction of the
    message), what waits is counted in the server's budget, and all of it is released as the
    handler takes the rest."""
    hold = trio.Event()
    sizes: list[int] = []
    seen: dict[str, int] = {}
    connections: list[WebSocket] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        connections.append(ws)
        async for chunk in ws.receive_streaming():
            sizes.append(len(chunk))
            if len(sizes) == 1:
                await hold.wait()

    fragment = b"f" * 1000
    count = 1000
    wire = frame(BINARY, fragment, fin=False)
    wire += frame(CONT, fragment, fin=False) * (count - 2) + frame(CONT, fragment)
    async with raw_peer(handler, max_queue=4, queue_high_water=16384, queue_low_water=4096) as (peer, srv):
        await trio.testing.wait_all_tasks_blocked()  # the handler waits for a message
        await peer.send_all(wire + frame(8, b"\x03\xe8"))
        await trio.testing.wait_all_tasks_blocked()
        (ws,) = connections
        seen["pending"] = ws.pending_messages
        seen["used"] = srv.budget.used
        hold.set()
        assert (await close_frame(peer)).code == CloseCode.NORMAL_CLOSURE
    assert 4 <= seen["pending"] < count // 4  # the reader stopped long before the end
    assert seen["used"] >= seen["pending"] * len(fragment)
    assert sizes == [len(fragment)] * count
    assert srv.budget.used == 0


async def test_receive_streaming_before_accept_is_a_runtime_error() -> None:
    async def handler(ws: WebSocket) -> None:
        with pytest.raises(RuntimeError, match="accepted"):
            ws.receive_streaming()
        await ws.accept()
        await ws.send_text("checked")

    async with open_test_client(handler) as client:
        assert await client.receive_text(timeout=5) == "checked"
