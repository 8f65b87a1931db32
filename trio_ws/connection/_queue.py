"""The bounded queue between a connection's reader task and its handler.

It behaves like a ``trio`` memory channel of ``max_queue`` messages with one sender (the reader)
and one receiver (``receive()``, which refuses a second task), and costs less: an idle connection
holds no buffer and no task registries, only this object. With ``size == 0`` a message passes only
straight to a waiting receiver, as with ``trio.open_memory_channel(0)``.
"""

from __future__ import annotations

import collections
from typing import Generic, TypeVar, final

import trio

__all__ = ["MessageQueue"]

T = TypeVar("T")


@final
class MessageQueue(Generic[T]):
    """At most ``size`` items waiting; FIFO; one putting task and one getting task at a time."""

    __slots__ = ("_closed", "_getter", "_items", "_putter", "size")

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError("size must be >= 0")
        self.size = size
        self._items: collections.deque[T] | None = None  # made with the first item
        self._closed = False
        self._getter: trio.lowlevel.Task | None = None  # waiting in wait()
        self._putter: trio.lowlevel.Task | None = None  # waiting in put()

    def __len__(self) -> int:
        return 0 if self._items is None else len(self._items)

    def put_nowait(self, item: T) -> None:
        """Queue ``item``; :class:`trio.WouldBlock` when full, ``ClosedResourceError`` once closed."""
        if self._closed:
            raise trio.ClosedResourceError("the queue is closed")
        items = self._items
        if items is None:
            items = self._items = collections.deque()
        getter = self._getter
        if getter is not None:  # a receiver is waiting: it takes this one (even with size 0)
            self._getter = None
            items.append(item)
            trio.lowlevel.reschedule(getter)
        elif len(items) < self.size:
            items.append(item)
        else:
            raise trio.WouldBlock

    async def put(self, item: T) -> None:
        """Queue ``item``, waiting for room. Cancelled, it has queued nothing. A checkpoint (one
        scheduler round trip at most: none more once it has waited)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while True:
            try:
                self.put_nowait(item)
            except trio.WouldBlock:
                pass
            else:
                if not waited:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return
            waited = True
            if self._putter is not None:
                raise trio.BusyResourceError("another task is already putting into this queue")
            self._putter = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort_put)

    def get_nowait(self) -> T:
        """The next item; :class:`trio.WouldBlock` if none, :class:`trio.EndOfChannel` once closed
        and empty."""
        items = self._items
        if items:
            item = items.popleft()
            if not items:
                self._items = None  # an idle connection keeps no buffer
            self._wake_putter()
            return item
        if self._closed:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def wait(self) -> None:
        """Wait until :meth:`get_nowait` has an item or the end to give (call it when it has just
        raised :class:`trio.WouldBlock`). A checkpoint."""
        if self._items or self._closed:
            await trio.lowlevel.checkpoint()
            return
        if self._getter is not None:
            raise trio.BusyResourceError("another task is already waiting on this queue")
        self._getter = trio.lowlevel.current_task()
        self._wake_putter()  # with size 0, a putter waits for exactly this
        await trio.lowlevel.wait_task_rescheduled(self._abort_get)

    def close(self) -> None:
        """No more items: once the queue is empty, :meth:`get_nowait` raises ``EndOfChannel``."""
        self._closed = True
        getter = self._getter
        if getter is not None:
            self._getter = None
            trio.lowlevel.reschedule(getter)

    def _wake_putter(self) -> None:
        putter = self._putter
        if putter is not None:
            self._putter = None
            trio.lowlevel.reschedule(putter)

    def _abort_get(self, _: object) -> trio.lowlevel.Abort:
        self._getter = None
        return trio.lowlevel.Abort.SUCCEEDED

    def _abort_put(self, _: object) -> trio.lowlevel.Abort:
        self._putter = None
        return trio.lowlevel.Abort.SUCCEEDED
