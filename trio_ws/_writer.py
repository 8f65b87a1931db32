"""The writer: one task per connection writes every frame, many frames per ``send_all``.

Senders append whole frames to an outbox (synchronously, so frames never interleave) and return; the
writer task takes everything queued and writes it at once. A sender waits only when the outbox holds
more than ``write_high_water`` bytes, until the writer has brought it down to ``write_low_water``.

:func:`checkpoint` is the checkpoint of the hot path: always a cancel point, and a schedule point
unless one of ours yielded within the last millisecond (trio's own proposal, python-trio/trio#1757).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import final

import trio

from ._io import send_all

__all__ = ["FrameWriter", "checkpoint", "resumed", "yield_if_due"]

#: How long a task may run through our calls without yielding to the scheduler.
SLICE = 0.001
_clock = time.perf_counter


class _LastYield(threading.local):
    """When one of our calls last yielded, per thread: each thread runs its own trio loop."""

    at = 0.0


_last = _LastYield()


def resumed() -> None:
    """Record that a task just came back from the scheduler (after a real wait)."""
    _last.at = _clock()


async def checkpoint() -> None:
    """A trio checkpoint that skips the scheduler round trip when one of ours happened less than
    :data:`SLICE` ago: cancellation is always checked, and no task runs through our calls for longer
    than the slice without letting the others run."""
    await trio.lowlevel.checkpoint_if_cancelled()
    await yield_if_due()


async def yield_if_due() -> None:
    """The schedule point of :func:`checkpoint`, shielded: for calls that have already acted."""
    last = _last
    if _clock() - last.at >= SLICE:
        await trio.lowlevel.cancel_shielded_checkpoint()
        last.at = _clock()


@final
class FrameWriter:
    """The outbox of one connection and the task that empties it into the stream.

    The task starts with the first frame (a connection that never sends costs no task). When a write
    fails, ``broken`` is set, ``on_broken`` is called, and whatever is queued is dropped.
    """

    __slots__ = (
        "_direct",
        "_flushed",
        "_frames",
        "_nursery",
        "_on_broken",
        "_parked",
        "_room",
        "_running",
        "_sending",
        "_stream",
        "broken",
        "high_water",
        "low_water",
        "pending",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        nursery: trio.Nursery,
        high_water: int,
        low_water: int,
        on_broken: Callable[[], None],
    ) -> None:
        self._stream = stream
        self._nursery = nursery
        self.high_water = high_water
        self.low_water = low_water
        self._on_broken = on_broken
        self._frames: list[bytes] = []
        #: Bytes queued and not yet written (including the write in progress).
        self.pending = 0
        self.broken = False
        self._running = False
        self._sending = False  # the writer task is in send_all
        self._direct = False  # another task is (see send_now)
        self._parked: trio.lowlevel.Task | None = None  # the writer task, waiting for frames
        self._room: trio.Event | None = None  # set when pending falls to low_water
        self._flushed: trio.Event | None = None  # set when pending falls to zero

    def write(self, data: bytes, *, start: bool = True) -> None:
        """Queue ``data`` (whole frames) to be written; never blocks.

        With ``start=False`` no writer task is started for it: the caller is about to call
        :meth:`flushed`, which then writes it itself (a close reply costs no task)."""
        if self.broken:
            return
        self._frames.append(data)
        self.pending += len(data)
        if not self._direct:
            self._wake(start)

    def _wake(self, start: bool = True) -> None:
        if self._parked is not None:
            trio.lowlevel.reschedule(self._parked)
            self._parked = None
        elif start and not self._running:
            self._running = True
            self._nursery.start_soon(self._run)

    async def send_now(self, data: bytes) -> bool:
        """Write ``data`` from the calling task if nothing is queued or being written, and return
        ``True``; otherwise queue it and return ``False`` (the caller still owes a checkpoint).

        For tasks that exist only to send (the Hub's), this saves waking the writer task."""
        if self._frames or self._sending or self._direct or self.broken:
            self.write(data)
            return False
        self.pending += len(data)
        await self._send_direct(data)
        return True

    async def _send_direct(self, data: bytes) -> None:
        """Write ``data`` (already counted in ``pending``) from the calling task."""
        self._direct = True
        try:
            written = await self._write(data)
        finally:
            self._direct = False
        if written and self._frames:  # queued meanwhile: the writer task takes over
            self._wake()

    async def _write(self, data: bytes) -> bool:
        """Write ``data`` (counted in ``pending``); ``False`` if the stream broke (queue dropped)."""
        try:
            await send_all(self._stream, data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._break()
            return False
        except BaseException:
            self._break()  # cancelled part-way: the stream may hold half a frame
            raise
        self.pending -= len(data)
        self._wrote()
        return True

    @property
    def full(self) -> bool:
        return self.pending > self.high_water and not self.broken

    async def wait_room(self) -> None:
        """Wait until the outbox is down to ``low_water`` bytes (or the connection broke)."""
        while self.full:
            if self._room is None:
                self._room = trio.Event()
            await self._room.wait()
        resumed()

    async def flushed(self) -> None:
        """Wait until everything queued is written (or the connection broke); what no task is
        writing yet, the calling task writes itself."""
        frames = self._frames
        if frames and not (self._sending or self._direct or self.broken):
            data = frames[0] if len(frames) == 1 else b"".join(frames)
            frames.clear()
            await self._send_direct(data)  # a checkpoint
            if not self.pending:
                return
        while self.pending and not self.broken:
            if self._flushed is None:
                self._flushed = trio.Event()
            await self._flushed.wait()
        await trio.lowlevel.checkpoint()

    async def _run(self) -> None:
        frames = self._frames
        while True:
            if not frames:
                self._parked = trio.lowlevel.current_task()
                await trio.lowlevel.wait_task_rescheduled(self._abort)
                continue
            data = frames[0] if len(frames) == 1 else b"".join(frames)
            frames.clear()
            self._sending = True
            try:
                written = await self._write(data)
            finally:
                self._sending = False
            if not written:
                return

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        self._parked = None
        return trio.lowlevel.Abort.SUCCEEDED

    def _wrote(self) -> None:
        if self._room is not None and self.pending <= self.low_water:
            self._room.set()
            self._room = None
        if self._flushed is not None and not self.pending:
            self._flushed.set()
            self._flushed = None

    def _break(self) -> None:
        self.broken = True
        self._frames.clear()
        self.pending = 0
        self._wrote()
        self._on_broken()
