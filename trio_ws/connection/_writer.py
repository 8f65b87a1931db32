"""The writer: the only path to a connection's stream, and the one place that closes it.

Ordering rule: frames are whole byte strings appended to one outbox, synchronously, so two frames
never interleave. A fragmented message holds :attr:`Writer.message_lock` (a ``trio.StrictFIFOLock``)
from its first frame to its last, so no other data message gets in between; control frames (pongs,
pings, the close frame) are not data and may go between its fragments. A sender that finds the lock
held waits for it in FIFO order. One task per connection empties the outbox, many frames per
``send_all``; a task that only sends (a room's) may write directly while the outbox is idle
(:meth:`Writer.send_now`). A sender waits only while the outbox holds more than ``high_water``
bytes, until it is down to ``low_water``.

On plain TCP (POSIX, ``_io.socket_of``) a frame goes out at once, from the task that sends it,
when nothing is queued and either no received message waits for the handler
(:attr:`Writer.waiting_input`: while one waits, more frames will follow, to go out together) or
it is :data:`ALONE` bytes or more. The writer task starts only for what must wait, writes headers
and payloads with ``writev`` (no join), and ends after :data:`QUIET` seconds without a write.

A write that fails, or is cancelled half-way, leaves the stream broken: :attr:`Writer.broken` is set,
the outbox dropped, and every waiter woken. The HTTP answers that end a connection before it is a
WebSocket (refusals, 503s) go out through :func:`answer_and_linger` (from ``_io``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sized
from typing import Final, TypeVar, final

import trio

from ..protocol import Connection, ConnectionState
from ._budget import BufferBudget
from ._io import answer_and_linger, close_socket, consume, drain, send_all, socket_of, write_now
from ._pacing import note_resumed

__all__ = ["ALONE", "QUIET", "Frame", "Writer", "answer_and_linger"]

T = TypeVar("T")
#: What a frame builder returns: the whole frame, or its header and its payload.
Frame = bytes | tuple[bytes, bytes]

#: On plain TCP, the writer task ends once it has written nothing for this long (the next frame
#: that must wait starts another).
QUIET: Final = 1.0
#: A frame this large goes out at once even while messages wait: queued, it would hold its sender.
ALONE: Final = 16384


@final
class Writer:
    """The outbox of one connection and the task that empties it into the stream: it starts with
    the first frame queued (on plain TCP, with the first that cannot go out at once)."""

    __slots__ = (
        "_budget", "_direct", "_flushed", "_frames", "_lock", "_nursery", "_parked", "_room", "_running",
        "_sending", "_socket", "_stream", "_writes", "broken", "closed", "high_water", "low_water",
        "pending", "waiting_input",
    )  # fmt: skip

    def __init__(
        self,
        stream: trio.abc.Stream,
        nursery: trio.Nursery,
        high_water: int,
        low_water: int,
        budget: BufferBudget | None = None,
    ) -> None:
        self._stream = stream
        self._budget = budget  # what is queued counts against it
        self._nursery = nursery
        self.high_water = high_water
        self.low_water = low_water
        self._frames: list[bytes | memoryview] = []  # whole frames, or a header then its payload
        self._socket = socket_of(stream)  # plain TCP on POSIX: written with writev, at once if idle
        #: What the handler has received and not taken yet (set by the inbox): while it is not
        #: empty, frames are queued for the writer task, not written at once (more will follow).
        self.waiting_input: Sized | None = None
        self._writes = 0  # system calls that wrote, for the writer task's quiet period
        #: Bytes queued and not yet written (including the write in progress).
        self.pending = 0
        #: A write failed or was cut short: nothing more goes out.
        self.broken = False
        #: The stream is closed (by :meth:`close` or :meth:`abort`).
        self.closed = False
        self._running = False
        self._sending = False  # a task (the writer's, or flushed()'s) is writing the outbox
        self._direct = False  # another task is (see send_now)
        self._parked: trio.lowlevel.Task | None = None  # the writer task, waiting for frames
        self._room: trio.Event | None = None  # set when pending falls to low_water
        self._flushed: trio.Event | None = None  # set when pending falls to zero
        self._lock: trio.StrictFIFOLock | None = None  # made when first needed

    # ------------------------------------------------------------- ordering

    @property
    def message_lock(self) -> trio.StrictFIFOLock:
        """Held for the whole of a fragmented message (see the module)."""
        if self._lock is None:
            self._lock = trio.StrictFIFOLock()
        return self._lock

    @property
    def message_in_progress(self) -> bool:
        """Whether a fragmented message holds :attr:`message_lock`."""
        lock = self._lock
        return lock is not None and lock.locked()

    async def send(self, build: Callable[[T], Frame], arg: T) -> None:
        """Queue the frame(s) ``build(arg)`` returns (bytes, or a header and its payload), after any
        fragmented message in progress.

        Waits only while the outbox is over ``high_water``. Raises ``trio.BrokenResourceError`` when
        the stream is broken; errors of ``build`` propagate (then nothing is queued). Cancelled, it
        has queued nothing. Not a schedule point (the caller paces).
        """
        if self.full:
            await self.wait_room()
        lock = self._lock
        if lock is not None and lock.locked():
            async with lock:
                self._build(build, arg)
        else:
            self._build(build, arg)

    def queue(self, build: Callable[[T], Frame], arg: T) -> bool:
        """:meth:`send` when it need not wait: ``False`` (nothing done) if it would."""
        if (self.pending > self.high_water and not self.broken) or (self._lock and self._lock.locked()):
            return False
        self._build(build, arg)
        return True

    def _build(self, build: Callable[[T], Frame], arg: T) -> None:
        if self.broken:
            raise trio.BrokenResourceError("the connection's stream is broken")
        out = build(arg)
        if type(out) is tuple:
            self.write(*out)
        else:
            self.write(out)  # type: ignore[arg-type]

    def write(self, data: bytes, payload: bytes = b"", *, start: bool = True) -> None:
        """Queue ``data`` (whole frames; or a header, then ``payload``) to be written; never blocks;
        dropped once broken. On plain TCP, written at once if nothing waits (see the module).

        With ``start=False`` no writer task is started for it: the caller is about to call
        :meth:`flushed`, which then writes it itself (a close reply costs no task)."""
        if self.broken:
            return
        frames = self._frames
        if not (frames or self._socket is None or self._sending or self._direct or self.closed):
            waiting = self.waiting_input
            if waiting is None or not len(waiting) or len(data) + len(payload) >= ALONE:
                self._write_now(data, payload, start)
                return
        frames.append(data)
        n = len(data)
        if payload:
            frames.append(payload)
            n += len(payload)
        self.pending += n
        if self._budget is not None:
            self._budget.used += n
        if not self._direct:
            self._wake(start)

    def _write_now(self, data: bytes, payload: bytes, start: bool) -> None:
        """Write from the calling task what the socket takes; the rest waits for the writer task."""
        parts: list[bytes | memoryview] = [data, payload] if payload else [data]
        try:
            n = write_now(self._socket, parts)  # type: ignore[arg-type]
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.mark_broken()
            return
        self._writes += 1
        if rest := len(data) + len(payload) - n:
            consume(parts, n)
            self._frames.extend(parts)
            self._count(rest)
            self._wake(start)

    def close_frame(self, conn: Connection, code: int, reason: str) -> None:
        """Queue the close frame ``conn`` makes, if it may still send one and the stream is whole."""
        if (conn.state is ConnectionState.OPEN or conn.state is ConnectionState.FAILED) and not self.broken:
            self.write(conn.send_close(code, reason))

    async def close_frame_after_message(self, conn: Connection, code: int, reason: str) -> None:
        """:meth:`close_frame`, after a fragmented message in progress (a checkpoint only then)."""
        if self.message_in_progress:
            async with self.message_lock:
                self.close_frame(conn, code, reason)
        else:
            self.close_frame(conn, code, reason)

    def _wake(self, start: bool = True) -> None:
        if self._parked is not None:
            trio.lowlevel.reschedule(self._parked)
            self._parked = None
        elif start and not self._running and not self.closed:
            self._running = True
            self._nursery.start_soon(self._run)

    async def write_first(self, data: bytes) -> None:
        """Write ``data`` (the opening handshake's answer) from the calling task, before anything
        else; a failure leaves the writer broken."""
        self._count(len(data))
        await self._write(data)

    async def send_now(self, data: bytes) -> bool:
        """Write ``data`` from the calling task if nothing is queued or being written, and return
        ``True``; otherwise queue it and return ``False`` (the caller still owes a checkpoint).

        For tasks that exist only to send (a room's), this saves waking the writer task. On plain
        TCP it is :meth:`write`: at once if it can be, without waiting (``False``)."""
        if self._frames or self._sending or self._direct or self.broken or self._socket is not None:
            self.write(data)
            return False
        self._count(len(data))
        await self._send_direct(data)
        return True

    def _count(self, n: int) -> None:
        self.pending += n
        if self._budget is not None:
            self._budget.used += n

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
            self.mark_broken()
            return False
        except BaseException:
            self.mark_broken()  # cancelled part-way: the stream may hold half a frame
            raise
        self._done(len(data))
        return True

    # ------------------------------------------------------------ pushback

    @property
    def full(self) -> bool:
        """Whether the outbox is over ``high_water`` (senders wait)."""
        return self.pending > self.high_water and not self.broken

    async def wait_room(self) -> None:
        """Wait until the outbox is down to ``low_water`` bytes (or the stream broke)."""
        while self.full:
            if self._room is None:
                self._room = trio.Event()
            await self._room.wait()
        note_resumed()

    async def flushed(self) -> None:
        """Wait until everything queued is written (or the stream broke); what no task is writing
        yet, the calling task writes itself. A checkpoint."""
        frames = self._frames
        if frames and not (self._sending or self._direct or self.broken):
            if self._socket is not None:
                try:
                    await self._drain()
                except BaseException:
                    self.mark_broken()  # cancelled with part of a frame written, perhaps
                    raise
            else:
                data = frames[0] if len(frames) == 1 else b"".join(frames)
                frames.clear()
                await self._send_direct(data)  # type: ignore[arg-type]  # (a checkpoint)
                if not self.pending:
                    return
        while self.pending and not self.broken:
            if self._flushed is None:
                self._flushed = trio.Event()
            await self._flushed.wait()
        await trio.lowlevel.checkpoint()

    async def _run(self) -> None:
        quiet_for = QUIET if self._socket is not None else math.inf  # (send_all is no cancel point)
        try:
            while True:
                writes = self._writes
                with trio.CancelScope(deadline=trio.current_time() + quiet_for) as quiet:
                    while await self._write_queued():
                        pass
                if not quiet.cancelled_caught:
                    return  # the stream broke
                if writes == self._writes and not self._frames:
                    self._running = False  # quiet: the next frame that must wait starts a task
                    return
        except BaseException:
            if self._frames and self._socket is not None and not self._sending:
                self.mark_broken()  # cancelled writing, with part of a frame out perhaps
            raise  # (while it waited for a flushed() that writes, the stream is whole)

    async def _write_queued(self) -> bool:
        """Wait for frames and write them (the writer task's round); ``False`` once broken."""
        frames = self._frames
        if not frames or self._sending:  # (a flushed() writing them writes what comes too)
            self._parked = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort)
            return True
        if self._socket is not None:
            return await self._drain()
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        frames.clear()
        self._sending = True
        try:
            return await self._write(data)  # type: ignore[arg-type]
        finally:
            self._sending = False

    async def _drain(self) -> bool:
        """Write the outbox to the socket, waiting for room as needed; ``False`` if it broke.
        Cancelled while it waits for room, what is left stays queued."""
        assert self._socket is not None
        self._sending = True
        try:
            await drain(self._socket, self._frames, self._written)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.mark_broken()
            return False
        finally:
            self._sending = False
        return True

    def _written(self, n: int) -> None:
        """``n`` bytes of the outbox went out (on plain TCP, ``pending`` is all the outbox)."""
        self._writes += 1
        if n >= self.pending:
            self._frames.clear()
        else:
            consume(self._frames, n)
        self._done(n)

    def _done(self, n: int) -> None:
        self.pending -= n
        budget = self._budget
        if budget is not None:
            budget.used -= n
            if budget.room is not None:
                budget.released()
        if self._room is not None and self.pending <= self.low_water:
            self._room.set()
            self._room = None
        if self._flushed is not None and not self.pending:
            self._flushed.set()
            self._flushed = None

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        self._parked = None
        return trio.lowlevel.Abort.SUCCEEDED

    def mark_broken(self) -> None:
        """Nothing more can be written: drop the outbox and wake every waiter."""
        if self.broken:
            return
        self.broken = True
        self._frames.clear()
        if self._budget is not None:
            self._budget.used -= self.pending
            self._budget.released()
        self.pending = 0
        if self._room is not None:
            self._room.set()
            self._room = None
        if self._flushed is not None:
            self._flushed.set()
            self._flushed = None

    # ------------------------------------------------------------- closing

    async def close(self) -> None:
        """Write what is queued, then close the stream politely (TLS close_notify). The caller
        shields and bounds it; cancelled, it closes forcefully. A checkpoint."""
        try:
            await self.flushed()
            if not close_socket(self._stream):
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self._stream.aclose()
        except BaseException:
            await self.abort()
            raise
        self.closed = True

    async def abort(self) -> None:
        """Close the stream at once, without a goodbye; every waiter wakes (the stream is broken)."""
        self.mark_broken()
        self.closed = True
        await trio.aclose_forcefully(self._stream)
