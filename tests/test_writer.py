"""The writer and the hot path's checkpoints: many messages per write, cancellation, fairness."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
import trio
import trio.lowlevel
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

import trio_ws.connection._pacing as pacing
from trio_ws import WebSocket, WebSocketOptions, WebSocketServer
from trio_ws.client import connect_websocket, run_client
from trio_ws.protocol import SPEEDUPS, PreparedMessage, apply_mask
from trio_ws.protocol._frames import py_apply_mask
from trio_ws.testing import open_test_client


def test_the_c_speedup_is_built_here() -> None:
    """The test environment has a compiler, so the optional extension must be in use (a wheel built
    without one falls back to :func:`py_apply_mask`, tested below against it)."""
    assert SPEEDUPS


@given(st.binary(max_size=2000), st.binary(min_size=4, max_size=4), st.integers(0, 7))
def test_c_and_python_unmasking_agree(data: bytes, mask: bytes, offset: int) -> None:
    view = memoryview(data)[offset:]
    expected = bytes(b ^ mask[i % 4] for i, b in enumerate(view))
    assert apply_mask(view, mask) == expected
    assert py_apply_mask(view, mask) == expected
    assert apply_mask(bytearray(view), mask) == expected


def test_c_unmasking_rejects_a_wrong_mask() -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        apply_mask(b"abc", b"\x01\x02")


def test_c_unmasking_of_a_large_buffer() -> None:
    data = os.urandom(1 << 20)
    assert apply_mask(data, b"\x01\x02\x03\x04") == py_apply_mask(data, b"\x01\x02\x03\x04")


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Replace the slice clock: the test moves it by hand (a list of one float)."""
    now = [0.0]
    monkeypatch.setattr(pacing, "clock", lambda: now[0])
    monkeypatch.setattr(pacing.last_yield, "at", 0.0)
    return now


async def test_sends_between_two_yields_go_out_in_one_write(frozen_clock: list[float]) -> None:
    """100 sends with no schedule point due: the writer task writes them all with one send_all, in
    order."""
    writes: list[int] = []
    go = trio.Event()

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await go.wait()
        for i in range(100):
            await ws.send_text(f"m{i}")
        await ws.receive()

    server = WebSocketServer(handler, WebSocketOptions(ping_interval=None))
    client_side, server_side = trio.testing.memory_stream_pair()
    pump = server_side.send_stream.send_all_hook
    assert pump is not None

    async def counting_pump() -> None:
        writes.append(len(server_side.send_stream._outgoing._data))
        await pump()

    server_side.send_stream.send_all_hook = counting_pump
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_stream, server_side)
        handshake = await connect_websocket(client_side, "test", "/", WebSocketOptions(ping_interval=None))
        async with run_client(handshake) as client:
            writes.clear()  # the handshake's answer
            go.set()
            received = [await client.receive_text() for _ in range(100)]
            assert received == [f"m{i}" for i in range(100)]
            assert len(writes) == 1
            assert writes[0] == sum(2 + len(f"m{i}") for i in range(100))


def test_the_slice_is_kept_per_thread() -> None:
    """Two trio loops in two threads: a recent yield in one says nothing about the other."""
    pacing.note_resumed()
    seen: list[float] = []
    thread = threading.Thread(target=lambda: seen.append(pacing.last_yield.at))
    thread.start()
    thread.join()
    assert seen == [0.0]
    assert pacing.last_yield.at > 0.0


async def test_a_send_or_receive_in_a_cancelled_scope_does_nothing(frozen_clock: list[float]) -> None:
    """No schedule point is due, yet both are cancel points: cancelled, a send queues nothing and a
    receive takes nothing."""
    outcome: list[object] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("ready")
        await trio.testing.wait_all_tasks_blocked()  # the client sent "kept"; the reader queued it
        assert ws.pending_messages == 1
        with trio.CancelScope() as scope:
            scope.cancel()
            await ws.send_text("cancelled")
            outcome.append("sent")
        with trio.CancelScope() as scope:
            scope.cancel()
            outcome.append(await ws.receive_text())
        outcome.append(await ws.receive_text())
        await ws.send_text("after")

    async with open_test_client(handler) as client:
        assert await client.receive_text(timeout=5) == "ready"
        await client.send_text("kept")
        assert await client.receive_text(timeout=5) == "after"
    assert outcome == ["kept"]


async def test_a_handler_that_never_waits_still_lets_other_tasks_run(frozen_clock: list[float]) -> None:
    """With messages always waiting, receive() does not yield each time, but once per slice: other
    tasks run every SLICE of (here: simulated) time."""
    ticks = 0
    counts: list[int] = []

    async def other() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("ready")
        await trio.testing.wait_all_tasks_blocked()  # the client sent 1000; the reader queued them
        assert ws.pending_messages == 1000
        async with trio.open_nursery() as nursery:
            nursery.start_soon(other)
            await trio.lowlevel.checkpoint()
            start = ticks
            for _ in range(1000):
                await ws.receive_text()
                frozen_clock[0] += pacing.SLICE / 10  # ten calls per slice
            counts.append(ticks - start)
            nursery.cancel_scope.cancel()
        await ws.send_text("done")

    async with open_test_client(handler, max_queue=1000) as client:
        assert await client.receive_text(timeout=5) == "ready"
        for i in range(1000):
            await client.send_text(str(i))
        assert await client.receive_text(timeout=5) == "done"
    assert 90 <= counts[0] <= 110  # a yield every ten calls, not 1000 and not none


def test_without_the_extension_the_pure_python_core_is_used() -> None:
    """What a machine without a C compiler gets: the import falls back, and frames still work."""
    code = (
        "import sys; sys.modules['trio_ws.protocol._speedups'] = None\n"
        "from trio_ws.protocol import SPEEDUPS, Connection, Role, TextMessage, encode_frame\n"
        "assert not SPEEDUPS\n"
        "wire = encode_frame(1, b'hello', mask=b'abcd')\n"
        "assert Connection(Role.SERVER).receive_data(wire) == [TextMessage('hello')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_direct_writes_and_queued_frames_keep_each_senders_order() -> None:
    """The Hub's sender writes from its own task when the writer is idle; frames queued by another
    task meanwhile go out after it, by the writer task. Nothing is lost or reordered per sender."""

    async def handler(ws: WebSocket) -> None:
        await ws.accept()

        async def direct() -> None:
            for i in range(50):
                await ws.send_prepared(PreparedMessage(f"d{i}"), direct=True)

        async def queued() -> None:
            for i in range(50):
                await ws.send_text(f"q{i}")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(direct)
            nursery.start_soon(queued)
        await ws.send_text("end")
        await ws.receive()

    async with open_test_client(handler) as client:
        received = []
        while (message := await client.receive_text(timeout=5)) != "end":
            received.append(message)
    assert [m for m in received if m[0] == "d"] == [f"d{i}" for i in range(50)]
    assert [m for m in received if m[0] == "q"] == [f"q{i}" for i in range(50)]
