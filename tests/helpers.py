"""Helpers of the tests: frame builders (exact bytes, including ones our own encoder refuses to make), a
chat client of the chat example, and more."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import trio
import websockets.asyncio.server as ws_server

from trio_ws import WebSocket
from trio_ws.protocol import apply_mask, build_request

MASK = b"\x37\xfa\x21\x3d"


def free_port() -> int:
    """A TCP port nobody listens on now, for a server in another process."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = MASK,
    length: int | None = None,
) -> bytes:
    """Any frame, valid or not: ``rsv`` is the 3 RSV bits (0-7), ``length`` overrides the length."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        head = bytes((b0, mbit | n))
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask is None:
        return head + payload
    return head + mask + apply_mask(payload, mask)


@contextlib.contextmanager
def websockets_asyncio_server(
    handler: Callable[[ws_server.ServerConnection], Awaitable[None]] | None = None, **kwargs: Any
) -> Iterator[int]:
    """The websockets library's asyncio server (an echo server by default) in a thread; yields its port."""
    ready = threading.Event()
    port: list[int] = []
    stop: list[asyncio.Future[None]] = []
    loop = asyncio.new_event_loop()

    async def echo(conn: ws_server.ServerConnection) -> None:
        async for message in conn:
            await conn.send(message)

    async def main() -> None:
        async with ws_server.serve(handler or echo, "127.0.0.1", 0, **kwargs) as srv:
            port.append(srv.sockets[0].getsockname()[1])
            stop.append(loop.create_future())
            ready.set()
            await stop[0]

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),))
    thread.start()
    try:
        assert ready.wait(10), "the websockets server did not start"
        yield port[0]
    finally:
        if stop:
            loop.call_soon_threadsafe(stop[0].set_result, None)
        thread.join(10)
        loop.close()


async def upgraded(port: int) -> trio.SocketStream:
    """A raw client connection to 127.0.0.1:``port`` after a successful opening handshake: for tests
    that send frames by hand."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    request, _ = build_request(f"127.0.0.1:{port}", "/")
    await stream.send_all(request)
    head = b""
    while b"\r\n\r\n" not in head:
        head += await stream.receive_some(4096)
    assert head.startswith(b"HTTP/1.1 101")
    return stream


class Chat:
    """One chat client: the room's messages (out of their envelopes) apart from the rest."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.first: dict[str, Any] | None = None  # where it stands: {"offset", "epoch", "recovered"}
        self.who: list[str] | None = None
        self.presence: list[tuple[str, str]] = []  # ("join" | "leave", name)
        self.other: list[dict[str, Any]] = []  # words to this client only
        self.last: tuple[int, str] | None = None  # the position of the last room message
        self.passed: list[dict[str, Any]] = []  # room messages read past by until()

    async def next(self) -> dict[str, Any]:
        """The next room message (``{"from", "text"}``), taking note of everything before it."""
        while True:
            message = await self.ws.receive_json()
            if self._is_room_message(message):
                self.last = (message["offset"], message["epoch"])
                return dict(message["data"])

    async def until(self, check: Any) -> None:
        """Read until ``check()`` is true, room messages included (kept in ``passed``)."""
        while not check():
            message = await self.ws.receive_json()
            if self._is_room_message(message):
                self.passed.append(message["data"])

    def _is_room_message(self, message: dict[str, Any]) -> bool:
        """Whether ``message`` is a room message; any other is noted where it belongs."""
        if "data" in message:
            return True
        if "recovered" in message:
            self.first = message
        elif "who" in message:
            self.who = sorted(member["name"] for member in message["who"])
        elif "presence" in message:
            self.presence.append((message["presence"], message["info"]["name"]))
        else:
            self.other.append(message)
        return False
