"""The server-wide memory budget (``max_buffered_bytes``): every byte the connections hold is
counted; once the budget is spent readers pause (TCP pushes back), new handshakes get 503, and a
connection stuck holding part of a message is closed with 1013, so the process cannot grow without
bound and cannot stay stuck either."""

from __future__ import annotations

import contextlib

import trio
import trio.testing
from helpers import frame, upgraded

from trio_ws import WebSocket, WebSocketDisconnect, open_websocket, open_websocket_server
from trio_ws.connection import BufferBudget
from trio_ws.protocol import build_request

BINARY = 2


async def test_a_budget_wakes_its_readers_below_seven_eighths(autojump_clock: trio.testing.MockClock) -> None:
    budget = BufferBudget(800)
    budget.used = 800
    assert budget.full
    woke: list[int] = []

    async def reader() -> None:
        assert await budget.wait_room(10, lambda: False)
        woke.append(budget.used)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        budget.refund(50)  # 750: not full, but not under 700 yet
        await trio.testing.wait_all_tasks_blocked()
        assert woke == []
        budget.refund(100)
        await trio.testing.wait_all_tasks_blocked()
    assert woke == [650]


async def test_a_reader_that_holds_part_of_a_message_gives_up(autojump_clock: trio.testing.MockClock) -> None:
    budget = BufferBudget(100)
    budget.used = 100
    start = trio.current_time()
    assert not await budget.wait_room(3, lambda: True)
    assert trio.current_time() - start == 3
    assert budget.peak == 100


async def test_big_messages_arriving_at_once_stay_within_the_budget() -> None:
    """Six clients each start a 16 MiB message and push it as fast as TCP lets them; the server may
    hold 1 MiB in all. Their readers pause at the budget (one read each over it at most), a handshake
    meanwhile gets 503 while a light connection still echoes, the six are closed with 1013 after
    close_timeout, and then the server serves again with nothing held."""
    codes: list[int] = []
    all_closed = trio.Event()

    async def patient(ws: WebSocket) -> None:
        await ws.accept()
        if ws.path == "/echo":  # a bystander, holding next to nothing
            async for text in ws.iter_text():
                await ws.send_text(text)
            return
        try:
            await ws.receive()
        except WebSocketDisconnect as exc:
            codes.append(exc.code)
            if len(codes) == 6:
                all_closed.set()

    limit = 2**20
    async with (
        open_websocket_server(
            patient,
            "127.0.0.1",
            0,
            max_buffered_bytes=limit,
            max_message_size=2**24,
            ping_interval=None,
            close_timeout=1,
            compression=None,
        ) as server,
        contextlib.AsyncExitStack() as stack,
    ):
        bystander = await stack.enter_async_context(
            open_websocket("127.0.0.1", server.port, "/echo", compression=None)
        )
        streams = [await upgraded(server.port) for _ in range(6)]
        header = frame(BINARY, b"", length=2**24)  # the header (and mask) of a 16 MiB frame

        async def push(stream: trio.SocketStream) -> None:
            await stream.send_all(header)
            chunk = bytes(65536)
            try:
                while True:
                    await stream.send_all(chunk)
            except trio.BrokenResourceError:
                pass

        async with trio.open_nursery() as nursery:
            for stream in streams:
                nursery.start_soon(push, stream)
            await trio.testing.wait_all_tasks_blocked(cushion=0.2)  # TCP pushes back on every client
            assert server.budget.full
            # Every reader is paused now: what is held is the most it gets.
            assert server.budget.used <= limit + 6 * 65536 + 6 * 1024
            refused = await trio.open_tcp_stream("127.0.0.1", server.port)
            request, _ = build_request(f"127.0.0.1:{server.port}", "/")
            await refused.send_all(request)
            answer = await refused.receive_some(4096)
            await refused.aclose()
            assert answer.startswith(b"HTTP/1.1 503")
            with trio.fail_after(2):
                await bystander.send_text("still here")
                assert await bystander.receive_text() == "still here"
            with trio.fail_after(10):
                await all_closed.wait()
            nursery.cancel_scope.cancel()
        for stream in streams:
            await trio.aclose_forcefully(stream)
        assert codes == [1013] * 6
        assert server.budget.peak <= limit + 6 * 65536 + 6 * 1024
        await trio.testing.wait_all_tasks_blocked(cushion=0.1)
        assert server.budget.used == 0
        async with open_websocket("127.0.0.1", server.port, compression=None) as ws:
            await ws.send_bytes(b"x")  # served again (the handler then waits: closed by the block)
