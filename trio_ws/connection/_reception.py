"""The handler's side of the inbox: what ``receive()`` and ``receive_streaming()`` take from the
queue the reader task fills.

:class:`Reception` is a base of :class:`~trio_ws.connection._inbox.Inbox` (which sets its slots up).
The queue holds whole messages and, for a message that is streamed, its chunks: the protocol makes
chunks only for the message a ``receive_streaming()`` asked for when nothing was waiting
(:meth:`Reception.next_chunk`), so a receive in progress never meets chunks it did not expect, and
the hot path (a whole message waiting) pays no check for them:

- ``receive()`` after a stream that was left before its end drops the rest of that message first;
- ``receive()`` after a stream that was asked for but got nothing (its wait was cancelled) joins
  the chunks into the whole message, as if nothing had been asked.
"""

from __future__ import annotations

import collections
from typing import Final, cast

import trio

from ..protocol import BytesMessage, Connection, MessageChunk, TextMessage
from ._budget import BufferBudget
from ._options import WebSocketOptions
from ._pacing import note_resumed, yield_if_due
from ._queue import MessageQueue

__all__ = ["MESSAGE_OVERHEAD", "Item", "Reception"]

#: What the queue holds: whole messages, and the chunks of a streamed one.
Item = TextMessage | BytesMessage | MessageChunk

#: What a received message (or chunk) costs at the least against the queue's and the read-ahead's
#: byte bounds, however short its payload (about what its objects take in memory).
MESSAGE_OVERHEAD: Final = 64

_WAITING: Final = 1  # a task waits in a receive
_CHUNKS: Final = 2  # chunks of a streamed message may come before the next whole message
_DROPPED: Final = object()  # the owner of a stream whose rest is being dropped


class Reception:
    """Taking received messages and chunks (see the module)."""

    __slots__ = (
        "_chunk_owner",
        "_draining",
        "_held",
        "_partial",
        "_queued_bytes",
        "_receiving",
        "_resume_reading",
        "_unreceived",
    )
    _budget: BufferBudget | None
    _conn: Connection
    _options: WebSocketOptions
    _queue: MessageQueue[Item]
    _queued_bytes: int
    _backlog: collections.deque[Item] | None
    _partial: int
    _unreceived: int
    _drained: trio.Event | None
    _resume_reading: trio.Event | None
    _draining: bool
    _receiving: int  # _WAITING and _CHUNKS
    _chunk_owner: object | None  # the stream that took part of the message in progress
    _held: list[str | bytes] | None  # chunks a cancelled receive() had taken

    @property
    def pending_messages(self) -> int:
        """Messages (or chunks) received and not yet taken by :meth:`receive`."""
        return len(self._queue) + (len(self._backlog) if self._backlog else 0)

    def take(self) -> Item | None:
        """A waiting whole message or ``None`` (the caller checkpoints, then calls :meth:`wait`);
        ``trio.EndOfChannel`` at the end; ``trio.BusyResourceError`` if another task waits in
        :meth:`wait`."""
        if self._receiving:  # another task waits, or chunks may come first (wait() sorts them)
            if self._receiving & _WAITING:
                raise trio.BusyResourceError("another task is already receiving from this WebSocket")
            return None
        try:
            message = self._queue.get_nowait()
        except trio.WouldBlock:
            return None
        self._dequeued(message)
        return message

    async def wait(self) -> Item | None:
        """Wait for the next whole message (after :meth:`take` gave none); ``None`` at the end."""
        if self._receiving & _CHUNKS:
            message = await self._whole_message()
            await yield_if_due()  # (it may have waited for nothing)
            return message
        self._receiving |= _WAITING
        queue = self._queue
        try:
            await queue.wait()
            try:
                message = queue.get_nowait()
            except trio.EndOfChannel:
                return None
            note_resumed()
        finally:
            self._receiving &= ~_WAITING
        self._dequeued(message)
        return message

    async def next_chunk(self, owner: object, first: bool) -> tuple[str | bytes, bool] | None:
        """The next chunk of the message ``owner`` streams and whether it is the last one, waiting
        for it; ``None`` at the end of the connection. ``first``: ``owner`` starts on the next
        message (the rest of one a stream left is dropped first): a whole message waiting is its
        only chunk; if none waits, the protocol streams the one arriving (what of it came already
        is the first chunk). ``RuntimeError`` if another receive dropped the rest of ``owner``'s
        message, ``trio.BusyResourceError`` if another task waits."""
        if self._receiving & _WAITING:
            raise trio.BusyResourceError("another task is already receiving from this WebSocket")
        if first:
            if self._chunk_owner is not None and not await self._drop_rest():
                return None
            if self._held:  # taken by a receive() that was cancelled: they come first
                data, self._held = _joined(self._held).data, None
                self._chunk_owner = owner
                return data, False
            if not self._receiving & _CHUNKS and not len(self._queue) and not self._backlog:
                so_far = self._conn.stream_message()
                self._receiving |= _CHUNKS
                self._count_partial()
                if so_far:
                    self._chunk_owner = owner
                    return so_far, False
        elif self._chunk_owner is not owner:
            raise RuntimeError("the rest of this message was dropped by another receive")
        item = await self._next_item()
        if item is None:
            return None
        if type(item) is not MessageChunk:
            return item.data, True  # it had arrived whole
        if item.final:
            self._receiving &= ~_CHUNKS
            self._chunk_owner = None
        else:
            self._chunk_owner = owner
        return item.data, item.final

    def discard(self) -> None:
        """Nothing will receive any more (the handler is done): drop what is queued."""
        self._draining = True
        while len(self._queue):  # (so get_nowait cannot raise)
            self._dequeued(self._queue.get_nowait())

    async def _next_item(self) -> Item | None:
        """The next message or chunk, waiting for it; ``None`` at the end."""
        queue = self._queue
        try:
            item = queue.get_nowait()
        except trio.EndOfChannel:
            return None
        except trio.WouldBlock:
            self._receiving |= _WAITING
            try:
                await queue.wait()
                try:
                    item = queue.get_nowait()
                except trio.EndOfChannel:
                    return None
            finally:
                self._receiving &= ~_WAITING
            note_resumed()
        self._dequeued(item)
        return item

    async def _whole_message(self) -> Item | None:
        """:meth:`wait` when chunks may come first: drop the rest of a message a stream left, or
        join the chunks of one no stream took."""
        if self._chunk_owner is not None and not await self._drop_rest():
            return None
        if not self._receiving & _CHUNKS:
            return await self._next_item()
        held = self._held
        if held is None:
            held = self._held = []
        while True:
            item = await self._next_item()
            if item is None:
                return None
            assert type(item) is MessageChunk
            held.append(item.data)
            if item.final:
                self._held = None
                self._receiving &= ~_CHUNKS
                return _joined(held)

    async def _drop_rest(self) -> bool:
        """Drop the rest of the message a stream took part of; ``False`` at the end."""
        self._chunk_owner = _DROPPED  # that stream is over; a cancelled drop goes on next time
        while True:
            item = await self._next_item()
            if item is None:
                return False
            if type(item) is MessageChunk and item.final:
                self._chunk_owner = None
                self._receiving &= ~_CHUNKS
                return True

    def _count_partial(self) -> None:
        """Count what the protocol holds of the message in progress against the budget."""
        budget = self._budget
        if budget is not None:
            budget.used += (partial := self._conn.buffered_bytes) - self._partial
            self._partial = partial
            if budget.room is not None:
                budget.released()

    def _dequeued(self, message: Item) -> None:
        size = n if (n := len(message.data)) > MESSAGE_OVERHEAD else MESSAGE_OVERHEAD
        self._queued_bytes -= size
        budget = self._budget
        if budget is not None:
            budget.used -= size
            if budget.room is not None:
                budget.released()
        self._unreceived -= 1
        if self._drained is not None and not self._unreceived:
            self._drained.set()
        resume = self._resume_reading
        if resume is not None and self._queued_bytes <= self._options.queue_low_water:
            self._resume_reading = None
            resume.set()


def _joined(pieces: list[str | bytes]) -> TextMessage | BytesMessage:
    if isinstance(pieces[0], str):
        return TextMessage("".join(cast("list[str]", pieces)))
    return BytesMessage(b"".join(cast("list[bytes]", pieces)))
