"""The writer on plain TCP (POSIX): a frame goes out at once from the task that sends it when
nothing waits; frames sent while received messages wait go out together, headers and payloads in
one gathered write, unless they are large; the writer task starts only for what must wait and ends
once quiet; a write the socket cannot take whole is finished by the writer task, in order."""

from __future__ import annotations

import os

import pytest
import trio
import trio.testing
from helpers import frame

import trio_ws.connection._io as io_module
import trio_ws.connection._writer as writer_module
from trio_ws import WebSocket, open_websocket_server
from trio_ws.connection._io import socket_of
from trio_ws.connection._writer import ALONE, QUIET, Writer
from trio_ws.protocol import BytesMessage, Connection, Event, Role, TextMessage, build_request

pytestmark = pytest.mark.skipif(not hasattr(os, "writev"), reason="the short path is POSIX only")

TEXT = 1
WRITER_TASK = "Writer._run"


class Tasks(trio.abc.Instrument):
    """Writer tasks started and ended."""

    def __init__(self) -> None:
        self.spawned = self.exited = 0

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.spawned += task.name.endswith(WRITER_TASK)

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self.exited += task.name.endswith(WRITER_TASK)


class RawClient:
    """A client of bytes and a sans-I/O connection: no trio_ws task of its own."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = Connection(Role.CLIENT, max_message_size=None)
        self.events: list[Event] = []

    async def messages(self, n: int) -> list[Event]:
        while len(self.events) < n:
            data = await self.stream.receive_some(1 << 20)
            assert data, "the server closed the connection"
            self.events += self.conn.receive_data(data)
        out, self.events = self.events[:n], self.events[n:]
        return out

    async def send_texts(self, *texts: str) -> None:
        await self.stream.send_all(b"".join(frame(TEXT, t.encode()) for t in texts))


async def raw_client(port: int) -> RawClient:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(build_request("127.0.0.1", "/")[0])
    head = b""
    while b"\r\n\r\n" not in head:
        head += await stream.receive_some()
    assert head.startswith(b"HTTP/1.1 101")
    assert head.endswith(b"\r\n\r\n")
    return RawClient(stream)


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    async for message in ws:
        if isinstance(message, str):
            await ws.send_text(message)
        else:
            await ws.send_bytes(message)


async def test_an_answer_with_nothing_waiting_costs_no_writer_task() -> None:
    """Ten round trips, one message in flight: each echo is written by the handler's own task, at
    once; no writer task ever starts (before: one started with the first frame, for good)."""
    tasks = Tasks()
    async with open_websocket_server(echo, "127.0.0.1", 0, ping_interval=None) as server:
        client = await raw_client(server.port)
        trio.lowlevel.add_instrument(tasks)
        for i in range(10):
            await client.send_texts(f"m{i}")
            assert await client.messages(1) == [TextMessage(f"m{i}")]
        trio.lowlevel.remove_instrument(tasks)
        await client.stream.aclose()
    assert tasks.spawned == 0


async def test_answers_to_messages_that_waited_go_out_together(monkeypatch: pytest.MonkeyPatch) -> None:
    """Twelve messages in one read: the answers to the first eleven wait (more will follow), and
    all twelve go out in one system call, in order."""
    writes: list[int] = []
    real = io_module.write_now

    def counting(sock: trio.socket.SocketType, buffers: list[bytes | memoryview]) -> int:
        writes.append(len(buffers))
        return real(sock, buffers)

    monkeypatch.setattr(writer_module, "write_now", counting)  # the sending task's writes
    monkeypatch.setattr(io_module, "write_now", counting)  # the writer task's
    async with open_websocket_server(echo, "127.0.0.1", 0, ping_interval=None) as server:
        client = await raw_client(server.port)
        writes.clear()  # (the 101)
        await client.send_texts(*(f"m{i}" for i in range(12)))
        assert await client.messages(12) == [TextMessage(f"m{i}") for i in range(12)]
        await client.stream.aclose()
    assert writes == [12]


async def test_large_answers_go_out_at_once_even_while_messages_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four messages of ALONE bytes in one read: each answer is written by the handler's task at
    once, header and payload gathered, though messages still wait (before, the first three were
    queued, and a sender of 64 KiB frames waited for the writer task after every message)."""
    writes: list[int] = []
    real = io_module.write_now

    def counting(sock: trio.socket.SocketType, buffers: list[bytes | memoryview]) -> int:
        writes.append(len(buffers))
        return real(sock, buffers)

    monkeypatch.setattr(writer_module, "write_now", counting)  # the sending task's writes only
    payloads = [bytes([i]) * ALONE for i in range(4)]
    async with open_websocket_server(echo, "127.0.0.1", 0, ping_interval=None) as server:
        client = await raw_client(server.port)
        writes.clear()  # (the 101)
        await client.stream.send_all(b"".join(frame(2, p) for p in payloads))
        assert await client.messages(4) == [BytesMessage(p) for p in payloads]
        await client.stream.aclose()
    assert writes == [2, 2, 2, 2]


async def test_the_writer_task_ends_once_quiet(autojump_clock: trio.testing.MockClock) -> None:
    """The writer task a burst started ends after QUIET seconds without a write (one that wrote
    meanwhile goes on); the next burst starts another, and its answers arrive."""
    tasks = Tasks()
    async with open_websocket_server(echo, "127.0.0.1", 0, ping_interval=None) as server:
        client = await raw_client(server.port)
        trio.lowlevel.add_instrument(tasks)
        await client.send_texts("a", "b")
        assert await client.messages(2) == [TextMessage("a"), TextMessage("b")]
        assert (tasks.spawned, tasks.exited) == (1, 0)
        await trio.sleep(QUIET * 0.75)
        await client.send_texts("c", "d")  # a write in the task's first quiet period
        assert await client.messages(2) == [TextMessage("c"), TextMessage("d")]
        await trio.sleep(QUIET * 0.5)
        assert (tasks.spawned, tasks.exited) == (1, 0)  # it wrote: a second period began
        await trio.sleep(QUIET * 2)
        assert (tasks.spawned, tasks.exited) == (1, 1)
        await client.send_texts("e", "f")
        assert await client.messages(2) == [TextMessage("e"), TextMessage("f")]
        assert tasks.spawned == 2
        trio.lowlevel.remove_instrument(tasks)
        await client.stream.aclose()


async def test_a_message_larger_than_the_socket_takes_arrives_whole_and_in_order() -> None:
    """16 MiB and then a short message: the handler's task writes what the socket takes (header
    and payload gathered, not joined), the writer task the rest once the peer reads."""
    big = os.urandom(1 << 24)

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws.receive()
        await ws.send_bytes(big)
        await ws.send_text("end")
        await ws.receive()

    async with open_websocket_server(handler, "127.0.0.1", 0, ping_interval=None) as server:
        client = await raw_client(server.port)
        await client.send_texts("go")
        await trio.testing.wait_all_tasks_blocked()  # the socket is full, the rest waits
        assert await client.messages(2) == [BytesMessage(big), TextMessage("end")]
        await client.stream.aclose()


async def test_a_writer_cancelled_with_part_of_a_frame_out_is_broken() -> None:
    """The socket took part of a frame, the writer task waits for room, the connection's tasks
    are cancelled: the stream holds half a frame, so the writer is broken."""
    left, right = trio.socket.socketpair()
    stream = trio.SocketStream(left)
    assert socket_of(stream) is not None
    async with trio.open_nursery() as nursery:
        writer = Writer(stream, nursery, 2**30, 2**29)
        writer.write(b"\x82\x7f" + (1 << 23).to_bytes(8, "big"), bytes(1 << 23))
        assert 0 < writer.pending < (1 << 23) + 10
        await trio.testing.wait_all_tasks_blocked()
        assert not writer.broken
        nursery.cancel_scope.cancel()
    assert writer.broken
    assert writer.pending == 0
    stream.socket.close()
    right.close()


async def test_flushed_and_the_writer_task_never_write_at_once() -> None:
    """flushed() from another task (a close) writes the outbox while the writer task it started
    is yet to run: the writer task leaves it to flushed() (two tasks waiting to write on one
    socket would be refused), and everything arrives once, in order."""
    left, right = trio.socket.socketpair()
    stream, peer = trio.SocketStream(left), trio.SocketStream(right)
    head, payload = b"H" * 16, os.urandom(1 << 23)
    received = bytearray()
    done = trio.Event()

    async def read_all(n: int) -> None:
        while len(received) < n:
            received.extend(await peer.receive_some(1 << 20))
        done.set()

    async with trio.open_nursery() as nursery:
        writer = Writer(stream, nursery, 2**30, 2**29)
        writer.write(head, payload)  # the socket takes part; the writer task is started
        assert writer.pending
        nursery.start_soon(read_all, len(head) + len(payload) + 4)
        await writer.flushed()  # (this task writes the rest, before the writer task runs)
        assert writer.pending == 0
        writer.write(b"tail")  # at once: nothing is queued
        assert writer.pending == 0
        await done.wait()
        nursery.cancel_scope.cancel()  # (the writer task would end after a quiet period)
    assert received == head + payload + b"tail"
    assert not writer.broken
    await stream.aclose()
    await peer.aclose()


async def test_a_writer_task_cancelled_while_flushed_writes_breaks_nothing() -> None:
    """The connection's tasks are cancelled (its end) while a close's flushed() writes the outbox
    and the writer task waits for it: the writer task had nothing on the wire, so the stream is
    whole and the rest (the close frame, say) still goes out."""
    left, right = trio.socket.socketpair()
    stream, peer = trio.SocketStream(left), trio.SocketStream(right)
    head, payload = b"H" * 16, os.urandom(1 << 23)
    received = bytearray()
    flushed = trio.Event()
    cancel_tasks = trio.CancelScope()

    async def tasks_home(task_status: trio.TaskStatus[trio.Nursery]) -> None:
        with cancel_tasks:
            async with trio.open_nursery() as home:
                task_status.started(home)
                await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        writer = Writer(stream, await nursery.start(tasks_home), 2**30, 2**29)

        async def close() -> None:
            writer.write(head, payload)  # the socket takes part; the writer task is started
            await writer.flushed()  # (writes the rest from here, before the writer task runs)
            flushed.set()

        nursery.start_soon(close)
        await trio.testing.wait_all_tasks_blocked()
        cancel_tasks.cancel()  # the writer task, waiting for flushed(), is cancelled
        await trio.testing.wait_all_tasks_blocked()
        assert not writer.broken
        while len(received) < len(head) + len(payload):
            received.extend(await peer.receive_some(1 << 20))
        await flushed.wait()
    assert received == head + payload
    assert not writer.broken
    await stream.aclose()
    await peer.aclose()
