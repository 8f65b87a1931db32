"""What a connection sends, and the typed receives: the message API of :class:`~trio_ws.WebSocket`.

:class:`Messaging` is a base of ``WebSocket``: it implements ``send_*``, ``ping``, ``pong``, the
typed ``receive_*`` / ``iter_*`` (and ``async for``), ``receive_streaming`` and the message counters on
top of five hooks the connection class provides (``_parts``, ``_receiver``, ``_disconnect``,
``_ping_table``, ``_protocol``) and of its public ``receive()`` and ``close()``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterable, Callable, Iterable
from typing import Any

import trio

from ..protocol import CloseCode, Connection, LocalProtocolError, PreparedMessage
from ._exceptions import WebSocketDisconnect
from ._iteration import ChunkIterator, JSONMode, MessageIterator, check_json_mode
from ._pacing import cancel_point_and_pace, yield_if_due
from ._pings import PingTable
from ._reception import Reception
from ._writer import Frame, Writer

__all__ = ["Messaging"]


class Messaging:
    """Sending and typed receiving (see the module)."""

    __slots__ = ()

    # ------------------------------------------------- hooks of the connection

    def _parts(self) -> tuple[Connection, Writer]:
        """The protocol connection and the writer; ``RuntimeError`` before the connection is open."""
        raise NotImplementedError

    def _receiver(self) -> Reception | None:
        """What receives take messages from (``None`` before the connection is open)."""
        raise NotImplementedError

    def _disconnect(self) -> WebSocketDisconnect:
        """The error that says how the connection closed."""
        raise NotImplementedError

    def _ping_table(self) -> PingTable:
        """The connection's pings waiting for their pong."""
        raise NotImplementedError

    def _protocol(self) -> Connection | None:
        """The protocol connection, ``None`` before the connection is open."""
        raise NotImplementedError

    async def receive(self) -> str | bytes:
        """The next message (see ``WebSocket.receive``)."""
        raise NotImplementedError

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the connection (see ``WebSocket.close``)."""
        raise NotImplementedError

    # ------------------------------------------------------------- counters

    @property
    def messages_received(self) -> int:
        """Whole data messages received so far."""
        conn = self._protocol()
        return 0 if conn is None else conn.messages_received

    @property
    def bytes_received(self) -> int:
        """Payload bytes of the messages received so far (after decompression)."""
        conn = self._protocol()
        return 0 if conn is None else conn.bytes_received

    @property
    def messages_sent(self) -> int:
        """Whole data messages sent so far."""
        conn = self._protocol()
        return 0 if conn is None else conn.messages_sent

    @property
    def bytes_sent(self) -> int:
        """Payload bytes of the messages sent so far (before compression)."""
        conn = self._protocol()
        return 0 if conn is None else conn.bytes_sent

    # ------------------------------------------------------------ receiving

    async def receive_text(self) -> str:
        """The next message, which must be text; a binary one closes the connection with 1003 and
        raises :class:`WebSocketDisconnect`."""
        data = await self.receive()
        if not isinstance(data, str):
            await self._wrong_type("a text message was expected, binary arrived")
        assert isinstance(data, str)
        return data

    async def receive_bytes(self) -> bytes:
        """The next message, which must be binary; a text one closes with 1003 and raises."""
        data = await self.receive()
        if not isinstance(data, bytes):
            await self._wrong_type("a binary message was expected, text arrived")
        assert isinstance(data, bytes)
        return data

    async def _wrong_type(self, reason: str) -> None:
        await self.close(CloseCode.UNSUPPORTED_DATA, reason)
        raise WebSocketDisconnect(CloseCode.UNSUPPORTED_DATA, reason)

    async def receive_json(self, mode: JSONMode = "text") -> Any:
        """The next message parsed as JSON, from a text (``mode="text"``) or binary
        (``mode="binary"``) message; any other ``mode`` is a ``ValueError``.

        Invalid JSON closes the connection with 1007 and raises :class:`WebSocketDisconnect`."""
        check_json_mode(mode)
        data = await (self.receive_text() if mode == "text" else self.receive_bytes())
        try:
            return json.loads(data)
        except ValueError:
            await self.close(CloseCode.INVALID_FRAME_PAYLOAD_DATA, "invalid JSON")
            raise WebSocketDisconnect(CloseCode.INVALID_FRAME_PAYLOAD_DATA, "invalid JSON") from None

    def receive_streaming(self) -> ChunkIterator:
        """The next message in chunks, as they arrive, without waiting for the whole message:
        ``async for chunk in ws.receive_streaming():``. Each chunk is ``str`` for a text message and
        ``bytes`` for a binary one.

        A chunk is the payload of one frame (text is decoded: a character split across frames comes
        whole in the later chunk, and invalid UTF-8 closes the connection with 1007); what arrived
        before the first step comes as one chunk, so a message already received whole is one chunk.
        The limits are those of :meth:`receive`: ``max_message_size`` bounds the whole message
        (1009), and chunks not yet taken count against the queue's bounds.

        Consume it to the end before the next receive. If you leave the loop early, the next
        ``receive*()`` or ``receive_streaming()`` drops the rest of that message and returns the
        one after it; the abandoned iterator then raises ``RuntimeError``.

        Raises :class:`WebSocketDisconnect` once the connection is closed (also in the middle of the
        message) and :class:`trio.BusyResourceError` while another task is receiving, as
        :meth:`receive` does; ``RuntimeError`` before the connection is accepted.
        """
        receiver = self._receiver()
        if receiver is None:
            raise RuntimeError("receive_streaming() before the connection was accepted")
        return ChunkIterator(receiver, self._disconnect)

    def iter_text(self) -> MessageIterator[str]:
        """Text messages until the peer closes with 1000 or 1001 (then the loop ends); another close
        code raises :class:`WebSocketDisconnect`."""
        return MessageIterator(self.receive_text)

    def iter_bytes(self) -> MessageIterator[bytes]:
        """Binary messages until a normal close (see :meth:`iter_text`)."""
        return MessageIterator(self.receive_bytes)

    def iter_json(self, mode: JSONMode = "text") -> MessageIterator[Any]:
        """JSON messages until a normal close (see :meth:`iter_text`)."""
        check_json_mode(mode)
        return MessageIterator(functools.partial(self.receive_json, mode))

    def __aiter__(self) -> MessageIterator[str | bytes]:
        """``async for message in ws``: every message, ``str`` for text and ``bytes`` for binary,
        as :meth:`receive` gives them, until a normal close (see :meth:`iter_text`)."""
        return MessageIterator(self.receive)

    # -------------------------------------------------------------- sending

    async def send_json(self, data: Any, mode: JSONMode = "text") -> None:
        """Send ``data`` encoded as JSON, in a text (``mode="text"``) or binary (``mode="binary"``)
        message; any other ``mode`` is a ``ValueError``."""
        check_json_mode(mode)
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        if mode == "text":
            await self.send_text(text)
        else:
            await self.send_bytes(text.encode("utf-8"))

    async def _send(self, build: Callable[[Any], Frame], arg: Any, writer: Writer) -> None:
        """Queue ``build(arg)``'s frames (see ``Writer.send``); a cancel point, and a schedule
        point only when one is due."""
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            if not writer.queue(build, arg):  # full, or a fragmented message is going out
                await writer.send(build, arg)
        except (trio.BrokenResourceError, LocalProtocolError):
            await trio.lowlevel.cancel_shielded_checkpoint()  # a loop of failing sends still yields
            raise self._disconnect() from None
        await yield_if_due()

    async def send_text(self, data: str) -> None:
        """Send one text message."""
        conn, writer = self._parts()
        await self._send(conn.send_text_parts, data, writer)  # (a large payload: not joined)

    async def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        """Send one binary message."""
        conn, writer = self._parts()
        await self._send(conn.send_bytes_parts, data, writer)

    async def send_prepared(self, message: PreparedMessage, *, direct: bool = False) -> None:
        """Send a message prepared once for many connections (what a broadcast does): without
        compression the same frame bytes go to every connection.

        ``direct=True``, for a task that only sends (a room's sender): when nothing else is being
        written, the frame is written from the calling task, without waking the writer task."""
        conn, writer = self._parts()
        if not direct or writer.broken or writer.message_in_progress:
            return await self._send(conn.send_prepared, message, writer)
        await trio.lowlevel.checkpoint_if_cancelled()
        if writer.full:
            await writer.wait_room()
        try:
            data = conn.send_prepared(message)
        except LocalProtocolError:
            await trio.lowlevel.cancel_shielded_checkpoint()
            raise self._disconnect() from None
        if not await writer.send_now(data):
            await yield_if_due()
        if writer.broken:
            raise self._disconnect()

    async def send_fragments(self, fragments: Iterable[str | bytes] | AsyncIterable[str | bytes]) -> None:
        """Send one message in fragments, one frame each; all ``str`` (text) or all ``bytes``.

        Other messages wait until this one is complete; pings and pongs may still go in between.
        """
        conn, writer = self._parts()
        async with writer.message_lock:
            previous: str | bytes | None = None
            if isinstance(fragments, AsyncIterable):
                async for fragment in fragments:
                    if previous is not None:
                        await self._send_fragment(writer, conn, previous, fin=False)
                    previous = fragment
            else:
                for fragment in fragments:
                    if previous is not None:
                        await self._send_fragment(writer, conn, previous, fin=False)
                    previous = fragment
            if previous is None:
                raise ValueError("send_fragments() needs at least one fragment")
            await self._send_fragment(writer, conn, previous, fin=True)

    async def _send_fragment(self, writer: Writer, conn: Connection, data: str | bytes, fin: bool) -> None:
        if writer.full:
            await writer.wait_room()
        if writer.broken:
            raise self._disconnect()
        try:
            writer.write(conn.send_fragment(data, fin=fin))
        except LocalProtocolError:
            raise self._disconnect() from None
        await cancel_point_and_pace()

    async def ping(self, payload: bytes | None = None) -> float:
        """Send a ping and wait for its pong; return the round-trip time in seconds (also kept in
        :attr:`latency`). Raises :class:`WebSocketDisconnect` if the connection closes first."""
        conn, writer = self._parts()
        pings = self._ping_table()
        if payload is None:
            payload = pings.new_payload()
        answered = pings.add(payload, trio.current_time())
        try:
            await self._send(conn.send_ping, payload, writer)
            await answered.wait()
        except BaseException:
            pings.forget(payload)
            raise
        round_trip = pings.round_trip(payload)
        if round_trip is None:  # woken by the end of the connection, not by a pong
            raise self._disconnect()
        return round_trip

    async def pong(self, payload: bytes = b"") -> None:
        """Send an unsolicited pong (a one-way heartbeat)."""
        conn, writer = self._parts()
        await self._send(conn.send_pong, payload, writer)
