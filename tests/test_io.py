"""The short path for plain TCP (trio_ws.connection._io): same results and same errors as the
stream's methods."""

from __future__ import annotations

import os
import socket
import struct
import threading

import pytest
import trio
import trio.testing

from trio_ws.connection._io import (
    READ_SIZE,
    close_socket,
    consume,
    read_buffer,
    read_now,
    receive_some,
    send_all,
    socket_of,
    write_now,
)

posix = pytest.mark.skipif(not hasattr(os, "writev"), reason="readv/writev are POSIX")


async def tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    listener = listeners[0]
    assert isinstance(listener, trio.SocketListener)
    port = listener.socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listener.accept()
    await listener.aclose()
    return client, server


async def test_data_goes_both_ways_including_a_write_bigger_than_the_socket_buffer() -> None:
    client, server = await tcp_pair()
    big = bytes(range(256)) * 40_000  # 10 MB: several partial sends
    received = bytearray()

    async def read_all() -> None:
        while len(received) < len(big):
            received.extend(await receive_some(server, 65536))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_all)
        await send_all(client, big)
    assert received == big
    await send_all(server, b"")  # nothing to send is fine
    await client.aclose()
    assert await receive_some(server, 10) == b""  # the peer's FIN
    await server.aclose()


async def test_a_closed_socket_raises_closed_resource_error() -> None:
    client, server = await tcp_pair()
    await client.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await receive_some(client, 10)
    with pytest.raises(trio.ClosedResourceError):
        await send_all(client, b"x")
    await server.aclose()


async def test_a_reset_connection_raises_broken_resource_error() -> None:
    client, server = await tcp_pair()
    # The peer closes with RST (SO_LINGER 0): our next reads or writes fail.
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await server.aclose()
    try:
        with pytest.raises(trio.BrokenResourceError) as info:
            await receive_some(client, 10)  # ECONNRESET
        assert isinstance(info.value.__cause__, ConnectionResetError)
        with pytest.raises(trio.BrokenResourceError) as info:
            for _ in range(100):  # (a write may still succeed once)
                await send_all(client, b"x" * 1000)
        assert isinstance(info.value.__cause__, OSError)
    finally:
        await client.aclose()


async def test_other_streams_use_their_own_methods() -> None:
    left, right = trio.testing.memory_stream_pair()
    await send_all(left, b"hello")
    assert await receive_some(right, 100) == b"hello"
    await left.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await send_all(left, b"x")


async def test_close_socket_closes_a_tcp_stream_at_once_and_leaves_others_to_aclose() -> None:
    client, server = await tcp_pair()
    assert close_socket(server)  # synchronous: no checkpoint
    assert server.socket.fileno() == -1
    assert await receive_some(client, 10) == b""  # the peer sees the end of the stream
    await server.aclose()  # closing again is fine
    await client.aclose()
    left, right = trio.testing.memory_stream_pair()
    assert not close_socket(left)
    await left.aclose()
    await right.aclose()


@posix
async def test_read_now_and_write_now_never_wait() -> None:
    """The POSIX short path: ``None`` / ``0`` when the socket has nothing to give or no room,
    gathered writes in order, and the same errors as the stream's methods."""
    client, server = await tcp_pair()
    sock, peer = socket_of(server), socket_of(client)
    assert sock is not None
    assert peer is not None
    buffer = memoryview(bytearray(100))
    assert read_now(sock, buffer) is None  # nothing yet
    assert write_now(peer, [b"head", memoryview(b"--payload--")[2:-2], b"!"]) == 12
    await trio.lowlevel.wait_readable(sock)
    assert read_now(sock, buffer) == 12
    assert bytes(buffer[:12]) == b"headpayload!"
    written = 0
    while n := write_now(peer, [bytes(1 << 20)]):  # the peer does not read: the socket fills up
        written += n
    assert written > 0
    await client.aclose()
    with pytest.raises(trio.ClosedResourceError):
        write_now(peer, [b"x"])
    with pytest.raises(trio.ClosedResourceError):
        read_now(peer, buffer)
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await server.aclose()


@posix
async def test_a_reset_seen_by_read_now_is_a_broken_resource() -> None:
    client, server = await tcp_pair()
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await server.aclose()
    sock = socket_of(client)
    assert sock is not None
    await trio.lowlevel.wait_readable(sock)
    with pytest.raises(trio.BrokenResourceError) as info:
        read_now(sock, memoryview(bytearray(10)))
    assert isinstance(info.value.__cause__, ConnectionResetError)
    await client.aclose()


async def test_only_plain_tcp_streams_take_the_short_path() -> None:
    client, server = await tcp_pair()
    assert (socket_of(server) is server.socket) == hasattr(os, "writev")
    left, right = trio.testing.memory_stream_pair()
    assert socket_of(left) is None
    for stream in (client, server, left, right):
        await stream.aclose()


def test_consume_drops_bytes_from_the_front_without_copying() -> None:
    payload = b"0123456789"
    buffers: list[bytes | memoryview] = [b"ab", b"cde", payload]
    consume(buffers, 4)
    assert [bytes(b) for b in buffers] == [b"e", payload]
    consume(buffers, 3)
    assert [bytes(b) for b in buffers] == [b"23456789"]
    assert isinstance(buffers[0], memoryview)
    assert buffers[0].obj is payload


def test_the_read_buffer_is_one_per_thread() -> None:
    """Each thread runs its own trio loop, and its connections share one read buffer."""
    mine = read_buffer()
    assert read_buffer() is mine
    assert len(mine) == READ_SIZE == 65536 + 4096
    other: list[memoryview] = []
    thread = threading.Thread(target=lambda: other.append(read_buffer()))
    thread.start()
    thread.join()
    assert other[0] is not mine


async def test_receive_some_and_send_all_are_cancel_points_even_when_they_need_not_wait() -> None:
    """On plain TCP they read and write without trio's socket calls, and yield only to wait; a
    cancelled caller is still told at once, with nothing read or written."""
    client, server = await tcp_pair()
    await send_all(client, b"ready")
    await trio.testing.wait_all_tasks_blocked()
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await receive_some(server, 10)
        with pytest.raises(trio.Cancelled):
            await send_all(server, b"never")
    assert await receive_some(server, 3) == b"rea"  # at most max_bytes; the rest stays
    assert await receive_some(server, 10) == b"dy"
    await server.aclose()
    assert await receive_some(client, 10) == b""  # "never" was not written
    await client.aclose()


@posix
async def test_a_loop_that_never_waits_still_lets_other_tasks_run() -> None:
    """Data always ready (or room always there) never makes receive_some / send_all wait; they
    still yield to the scheduler once a slice is due, so such a loop cannot starve the others."""
    client, server = await tcp_pair()
    ran = False

    async def other() -> None:
        nonlocal ran
        ran = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_all, client, bytes(4_000_000))  # (waits for room as the reads go)
        await trio.testing.wait_all_tasks_blocked()  # the socket holds all it can take
        nursery.start_soon(other)
        taken = 0
        while not ran:
            taken += len(await receive_some(server, 10))
        # A millisecond of 10-byte reads is a few kilobytes; the socket held far more, and the
        # reads never had to wait.
        assert taken < 32_768
        nursery.cancel_scope.cancel()
    ran = False
    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        for _ in range(10_000):  # 100 kB: room all along (the peer's kernel takes it at once)
            await send_all(server, b"x" * 10)  # (the other way: the first is full)
            if ran:
                break
        assert ran
    await client.aclose()
    await server.aclose()
