"""Pacing of the hot path: how often a busy connection lets the scheduler run other tasks.

A trio checkpoint is a cancel point and a schedule point. Sending or receiving a message that needs
no waiting would pay a scheduler round trip each time; these calls keep the cancel point and make the
schedule point only when none of ours happened within the last :data:`SLICE` (trio's own proposal,
python-trio/trio#1757). No task runs through our calls for longer than the slice without letting
the others run.
"""

from __future__ import annotations

import threading
import time

import trio

__all__ = ["SLICE", "cancel_point_and_pace", "clock", "last_yield", "note_resumed", "yield_if_due"]

#: How long a task may run through our calls without yielding to the scheduler.
SLICE = 0.001
#: The clock of the slice (a test may replace it).
clock = time.perf_counter


class _LastYield(threading.local):
    """When one of our calls last yielded, per thread: each thread runs its own trio loop."""

    at = 0.0


#: When one of our calls last yielded (per thread).
last_yield = _LastYield()


def note_resumed() -> None:
    """Record that a task just came back from the scheduler (after a real wait)."""
    last_yield.at = clock()


async def cancel_point_and_pace() -> None:
    """Always a cancel point; a schedule point only when one is due (see the module)."""
    await trio.lowlevel.checkpoint_if_cancelled()
    await yield_if_due()


async def yield_if_due() -> None:
    """The schedule point of :func:`cancel_point_and_pace`, shielded: for calls that have acted."""
    last = last_yield
    if clock() - last.at >= SLICE:
        await trio.lowlevel.cancel_shielded_checkpoint()
        last.at = clock()
