"""A server-wide budget of buffered bytes: what every connection holds in memory, counted in one
place, so that the process stops taking more (readers pause, TCP pushes back, new handshakes get 503)
instead of growing until the machine kills it."""

from __future__ import annotations

from collections.abc import Callable
from typing import final

import trio

__all__ = ["BufferBudget"]


@final
class BufferBudget:
    """``limit`` bytes for everything the connections of one server hold: received messages not yet
    taken by their handlers (the queue and the read-ahead), the part of a message still arriving
    (undecoded bytes and the pieces so far, decompressed), and the bytes sent but not yet written.

    The connections count into :attr:`used` themselves (an attribute, for the hot path); once it
    reaches ``limit``, readers wait in :meth:`wait_room` until it is back under :attr:`resume`
    (seven eighths of the limit).
    """

    __slots__ = ("limit", "peak", "resume", "room", "used")

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("max_buffered_bytes must be positive")
        self.limit = limit
        self.resume = limit - limit // 8
        #: Bytes held now.
        self.used = 0
        #: The most held at once (updated when a reader has to wait).
        self.peak = 0
        #: Set for the readers waiting for room (``None`` while none waits).
        self.room: trio.Event | None = None

    @property
    def full(self) -> bool:
        """Whether the budget is spent: readers pause, handshakes are refused."""
        return self.used >= self.limit

    def refund(self, size: int) -> None:
        """``size`` bytes are no longer held."""
        self.used -= size
        if self.room is not None:
            self.released()

    def released(self) -> None:
        """Call after lowering :attr:`used` while :attr:`room` is set: wakes the waiting readers
        once it is under :attr:`resume`."""
        room = self.room
        if room is not None and self.used < self.resume:
            self.room = None
            room.set()

    async def wait_room(self, patience: float, give_up: Callable[[], bool]) -> bool:
        """Wait until :attr:`used` is back under :attr:`resume` (at once if the budget is not
        spent) and return ``True``; every ``patience`` seconds, ``give_up()`` may end the wait
        (``False``)."""
        if self.used > self.peak:
            self.peak = self.used
        if self.full:
            while self.used >= self.resume:
                if self.room is None:
                    self.room = trio.Event()
                with trio.move_on_after(patience) as waited:
                    await self.room.wait()
                if waited.cancelled_caught and give_up():
                    return False
        await trio.lowlevel.checkpoint()
        return True
