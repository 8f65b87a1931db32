"""The short path for plain TCP (trio_ws.connection._io): same results and same errors as the
stream's methods."""

from __future__ import annotations

import socket
import struct

import pytest
import trio
import trio.testing

from trio_ws.connection._io import close_socket, receive_some, send_all


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
