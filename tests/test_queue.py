"""The bounded queue between a connection's reader and its handler (trio_ws.connection._queue)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_ws.connection._queue import MessageQueue


def test_fifo_bounded_and_the_buffer_goes_when_empty() -> None:
    q = MessageQueue[int](2)
    q.put_nowait(1)
    q.put_nowait(2)
    with pytest.raises(trio.WouldBlock):
        q.put_nowait(3)
    assert len(q) == 2
    assert q.get_nowait() == 1
    assert q.get_nowait() == 2
    assert q._items is None  # an idle queue holds no deque
    with pytest.raises(trio.WouldBlock):
        q.get_nowait()


def test_after_close_the_items_left_come_out_then_end_of_channel() -> None:
    q = MessageQueue[int](4)
    q.put_nowait(1)
    q.close()
    with pytest.raises(trio.ClosedResourceError):
        q.put_nowait(2)
    assert q.get_nowait() == 1
    with pytest.raises(trio.EndOfChannel):
        q.get_nowait()


def test_negative_size_is_refused() -> None:
    with pytest.raises(ValueError):
        MessageQueue[int](-1)


async def test_a_waiting_receiver_is_woken_by_put_and_by_close() -> None:
    q = MessageQueue[str](1)
    got: list[str] = []

    async def receiver() -> None:
        while True:
            try:
                got.append(q.get_nowait())
            except trio.WouldBlock:
                await q.wait()
            except trio.EndOfChannel:
                got.append("end")
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        q.put_nowait("a")
        await trio.testing.wait_all_tasks_blocked()
        assert got == ["a"]
        q.close()
    assert got == ["a", "end"]


async def test_size_zero_hands_over_only_to_a_waiting_receiver() -> None:
    q = MessageQueue[int](0)
    with pytest.raises(trio.WouldBlock):
        q.put_nowait(1)
    got: list[int] = []

    async def receiver() -> None:
        await q.wait()
        got.append(q.get_nowait())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        q.put_nowait(7)
        with pytest.raises(trio.WouldBlock):  # the receiver has not run yet: no room for another
            q.put_nowait(8)
    assert got == [7]


async def test_put_waits_for_room_and_cancelled_it_queues_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    q = MessageQueue[int](1)
    q.put_nowait(1)
    with trio.move_on_after(1) as scope:  # (the autojump clock: no real wait)
        await q.put(2)
    assert scope.cancelled_caught
    assert len(q) == 1
    assert q._putter is None
    done = trio.Event()

    async def putter() -> None:
        await q.put(3)
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(putter)
        await trio.testing.wait_all_tasks_blocked()
        assert not done.is_set()
        assert q.get_nowait() == 1  # room: the putter goes on
        await done.wait()
    assert q.get_nowait() == 3


async def test_a_cancelled_wait_loses_nothing(autojump_clock: trio.testing.MockClock) -> None:
    q = MessageQueue[int](2)
    with trio.move_on_after(1) as scope:
        await q.wait()
    assert scope.cancelled_caught
    assert q._getter is None
    q.put_nowait(5)  # no stale receiver to hand it to: it is queued
    assert len(q) == 1
    await q.wait()  # returns at once: an item is there
    assert q.get_nowait() == 5


async def test_a_second_waiter_is_refused() -> None:
    q = MessageQueue[int](1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(q.wait)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await q.wait()
        q.close()


async def test_a_put_that_waited_makes_no_second_round_trip() -> None:
    """Each put into a full queue costs the putter one scheduler round trip (the wait), not two."""
    q = MessageQueue[int](1)
    steps: list[str] = []

    class Steps(trio.abc.Instrument):
        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            steps.append(task.name.rsplit(".", 1)[-1])

    async def putter() -> None:
        for i in range(10):
            await q.put(i)

    got: list[int] = []

    async def getter() -> None:
        while len(got) < 10:
            try:
                got.append(q.get_nowait())
            except trio.WouldBlock:
                await q.wait()

    trio.lowlevel.add_instrument(Steps())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(putter)
        nursery.start_soon(getter)
    assert got == list(range(10))
    # One step to start, one for the first put (a checkpoint), then one per wait for room.
    assert steps.count("putter") <= 12, steps
