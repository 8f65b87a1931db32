"""The inbox: the reader task (the only reader of the stream), the bounded queue of received
messages, and all of receive backpressure. The reader stops reading, so TCP pushes back, while the
queue is full or over ``queue_high_water`` bytes (until ``queue_low_water``), while the writer is over
``write_high_water`` with pongs, and while the server's buffer budget is spent (if it holds over
:data:`FAIR_SHARE`). A handler behind for :data:`READ_AHEAD_AFTER` makes it read ahead into a backlog
bounded by ``queue_high_water``, so that the peer's close is seen and answered; each message costs
:data:`MESSAGE_OVERHEAD` bytes at the least.
Nothing read is lost: only ``close()``, or the deadline after the peer's close, drops what the
handler has not taken. What the handler's receives take (whole messages, or a streamed message's
chunks) is :class:`~trio_ws.connection._reception.Reception`, a base of :class:`Inbox`.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import final

import trio

from ..protocol import (
    BytesMessage,
    CloseCode,
    CloseReceived,
    Connection,
    ConnectionState,
    MessageChunk,
    Pong,
    TextMessage,
)
from ._budget import BufferBudget
from ._io import close_socket, read_buffer, read_now, receive_some, socket_of
from ._limits import MessageMeter
from ._options import WebSocketOptions
from ._pacing import cancel_point_and_pace, note_resumed
from ._pings import PingTable
from ._queue import MessageQueue
from ._reception import MESSAGE_OVERHEAD, Item, Reception
from ._writer import Writer

__all__ = ["READ_AHEAD_AFTER", "Inbox"]

_RECEIVE_SIZE = 65536
#: How long the reader waits for a handler that is behind before it reads ahead (to see a close frame).
READ_AHEAD_AFTER = 0.05
#: While the server's budget is spent, a connection that holds less than this goes on reading.
FAIR_SHARE = 65536
_DATA = (TextMessage, BytesMessage, MessageChunk)  # the events that go to the queue


@final
class Inbox(Reception):
    """The receiving half of one connection (see the module). ``on_closed(False)`` is called when
    the reader is done (the closing handshake over, a failure, the stream ended), ``on_closed(True)``
    once the stream is closed too."""

    __slots__ = (  # and Reception's
        "_backlog", "_backlog_bytes", "_budget", "_conn", "_deliver_scope", "_done", "_drained",
        "_meter", "_on_closed", "_options", "_over_limit", "_queue", "_socket", "_stream", "_writer",
        "finished", "peer_closed", "pings",
    )  # fmt: skip

    def __init__(
        self,
        stream: trio.abc.Stream,
        conn: Connection,
        writer: Writer,
        options: WebSocketOptions,
        on_closed: Callable[[bool], None],
        budget: BufferBudget | None = None,
    ) -> None:
        self._stream = stream
        self._conn = conn
        self._writer = writer
        self._options = options
        #: The connection's pings waiting for a pong (set with the first ping).
        self.pings: PingTable | None = None
        self._on_closed = on_closed
        self._budget = budget  # what is held here counts against it
        self._partial = 0  # what the message in progress holds, as counted in the budget
        self._queue: MessageQueue[Item] = MessageQueue(options.max_queue)
        writer.waiting_input = self._queue  # while messages wait, frames wait to go out together
        self._socket = socket_of(stream)  # plain TCP on POSIX: read into the shared buffer
        self._queued_bytes = 0
        self._unreceived = 0  # messages delivered to the queue that no receive() has returned yet
        self._backlog: collections.deque[Item] | None = None  # parsed, not yet queued (it was full)
        self._backlog_bytes = 0
        self._resume_reading: trio.Event | None = None
        self._drained: trio.Event | None = None
        self._deliver_scope: trio.CancelScope | None = None  # while the reader waits for the handler
        self._done: trio.Event | None = None  # made when someone waits for the reader
        limit = options.message_limit
        self._meter = None if limit is None else MessageMeter(limit, trio.current_time())
        self._draining = False  # close() was called: deliver nothing more
        self._over_limit = False
        self._receiving = 0  # see Reception
        self._chunk_owner = None
        self._held = None
        #: The peer's close frame arrived.
        self.peer_closed = False
        #: The reader is done: nothing more will be received.
        self.finished = False

    def start(self, nursery: trio.Nursery, trailing: bytes) -> None:
        """Start the reader; ``trailing``: what came after the opening handshake."""
        nursery.start_soon(self._run, trailing)

    def stop(self) -> None:
        """This side is closing: deliver nothing more (what arrives is dropped)."""
        self._draining = True
        if self._deliver_scope is not None:
            self._deliver_scope.cancel()
        if self._resume_reading is not None:
            self._resume_reading.set()

    async def wait_finished(self) -> None:
        """Wait until the reader is done."""
        if not self.finished:
            if self._done is None:
                self._done = trio.Event()
            await self._done.wait()

    async def _run(self, trailing: bytes) -> None:
        conn = self._conn
        writer = self._writer
        high_water = self._options.queue_high_water
        budget = self._budget
        sock = self._socket
        buffer = read_buffer()
        data: bytes | bytearray | memoryview = trailing
        drained = True  # (the request's reads took what the socket had)
        try:
            while True:
                if data:
                    self._process(data)
                    if conn.has_data_to_send:
                        # A server's close reply: the reader leaves the loop (or, behind a full
                        # queue, goes to _peer_done) and writes it itself; no writer task for it.
                        self._send_replies(start=not conn.may_close_transport)
                        if writer.full and conn.state is ConnectionState.OPEN:
                            await writer.wait_room()  # pongs to a peer that does not read
                    if self._backlog or self._queued_bytes > high_water:
                        await self._deliver_backlog()
                    if conn.state is ConnectionState.FAILED:
                        assert conn.failure is not None
                        await self._fail(conn.failure.code, conn.failure.reason)
                        break
                    if self._over_limit:
                        await self._fail(CloseCode.POLICY_VIOLATION, "message rate limit exceeded")
                        await self._await_peer_close()
                        break
                    if conn.state is ConnectionState.CLOSED:
                        break
                if budget is not None and budget.used >= budget.limit and not await self._budget_room():
                    await self._fail(CloseCode.TRY_AGAIN_LATER, "server overloaded")
                    break
                if sock is None:
                    data = await receive_some(self._stream, _RECEIVE_SIZE)
                else:  # self._read(), one coroutine less while it waits
                    data = b""  # (a connection waiting keeps no view)
                    if drained and sock.fileno() != -1:  # (closed meanwhile: read_now raises)
                        # a read short of the buffer emptied the socket, most likely: no read
                        await trio.lowlevel.wait_readable(sock)  # that finds nothing
                        note_resumed()
                    else:
                        await cancel_point_and_pace()
                    n = read_now(sock, buffer)
                    while n is None:
                        await trio.lowlevel.wait_readable(sock)
                        note_resumed()
                        n = read_now(sock, buffer)
                    drained = n < len(buffer)
                    data = buffer[:n]
                if not data:
                    conn.receive_data(b"")
                    break
            if conn.state is ConnectionState.CLOSED and not conn.may_close_transport:
                # RFC 6455 §7.1.1: the server closes TCP first; wait for it, briefly.
                with trio.move_on_after(self._options.close_timeout):
                    while await self._read():
                        pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._stream_failed()
        finally:
            self.finished = True
            self._queue.close()
            self._drop_backlog()
            if budget is not None and self._partial:
                budget.refund(self._partial)
                self._partial = 0
            self._on_closed(False)
            if self._done is not None:
                self._done.set()
            try:  # what is queued goes first, then a polite close (TLS close_notify), bounded
                if not writer.closed and not writer.pending and close_socket(self._stream):
                    writer.closed = True  # nothing queued on plain TCP: closed at once
                if not writer.closed:
                    deadline = trio.current_time() + self._options.close_timeout
                    with trio.CancelScope(shield=True, deadline=deadline):
                        await writer.close()  # (a checkpoint; cancelled, it closes forcefully)
            finally:
                self._on_closed(True)

    async def _read(self) -> bytes | bytearray | memoryview:
        """What the stream has (waiting for it); empty at its end. On plain TCP, a view of the
        thread's read buffer: parse it before the next await. (``_run`` has its own copy.)"""
        sock = self._socket
        if sock is None:
            return await receive_some(self._stream, _RECEIVE_SIZE)
        buffer = read_buffer()
        await cancel_point_and_pace()  # (before the read: nothing may run between it and the parse)
        n = read_now(sock, buffer)
        while n is None:
            await trio.lowlevel.wait_readable(sock)
            note_resumed()
            n = read_now(sock, buffer)
        return buffer[:n]

    async def _budget_room(self) -> bool:
        """The server's budget is spent: wait (TCP pushes back meanwhile). ``False`` if this
        connection holds part of a message and waited ``close_timeout``: it is closed (1013), so
        that messages that never complete cannot keep the budget spent."""
        assert self._budget is not None
        if self._queued_bytes + self._backlog_bytes + self._partial <= FAIR_SHARE:
            return True  # a light connection goes on (a bystander's echo, say)
        conn = self._conn
        return await self._budget.wait_room(self._options.close_timeout, lambda: conn.buffered_bytes > 0)

    def _drop_backlog(self) -> None:
        if self._budget is not None and self._backlog_bytes:
            self._budget.refund(self._backlog_bytes)
        self._backlog = None
        self._backlog_bytes = 0

    def _stream_failed(self) -> None:  # (after the closing handshake, a ragged TLS end is fine)
        conn = self._conn
        if conn.state is not ConnectionState.CLOSED or conn.failure is not None:
            self._writer.mark_broken()

    def _process(self, data: bytes | bytearray | memoryview) -> None:
        """Feed received bytes to the protocol; whole messages go to the backlog."""
        meter = self._meter
        conn = self._conn
        events = conn.receive_data(data)
        budget = self._budget
        if budget is not None:
            budget.used += (partial := conn.buffered_bytes) - self._partial
            self._partial = partial
        for event in events:
            if isinstance(event, _DATA):
                if self._draining or self._over_limit:
                    continue
                if meter is not None and not meter.take(
                    len(event.data),
                    trio.current_time(),
                    1 if type(event) is not MessageChunk or event.final else 0,  # a message ends
                ):
                    self._over_limit = True  # this message and what follows are dropped
                    continue
                if self._backlog is None:
                    self._backlog = collections.deque()
                self._backlog.append(event)
                size = n if (n := len(event.data)) > MESSAGE_OVERHEAD else MESSAGE_OVERHEAD
                self._backlog_bytes += size
                if budget is not None:
                    budget.used += size
            elif isinstance(event, Pong):
                if self.pings is not None:
                    self.pings.answered(event.payload, trio.current_time())
            elif isinstance(event, CloseReceived):
                self.peer_closed = True

    def _send_replies(self, start: bool = True) -> bool:
        """Queue the pongs and close reply the protocol made (``True`` if any; control frames may go
        between fragments). ``start=False``: the caller flushes them itself."""
        out = self._conn.data_to_send()
        if out:
            self._writer.write(out, start=start)
        return bool(out)

    def _enqueued(self, message: Item) -> None:
        size = n if (n := len(message.data)) > MESSAGE_OVERHEAD else MESSAGE_OVERHEAD
        self._backlog_bytes -= size
        self._queued_bytes += size
        self._unreceived += 1

    async def _deliver_backlog(self) -> None:
        """Move the backlog into the queue, waiting (and after a while reading ahead) while it is
        full; what the read-ahead parsed as the delivery caught up goes on the next round."""
        if self._backlog is None:
            self._backlog = collections.deque()
        backlog = self._backlog
        high_water = self._options.queue_high_water
        conn = self._conn
        while not self._draining:
            put_nowait = self._queue.put_nowait
            try:
                while backlog:
                    put_nowait(backlog[0])
                    self._enqueued(backlog.popleft())
            except trio.WouldBlock:
                pass
            if not backlog and self._queued_bytes <= high_water:
                break
            with trio.CancelScope() as deliver_scope:
                self._deliver_scope = deliver_scope
                if conn.end_of_stream or conn.state is not ConnectionState.OPEN:
                    # The peer's close came in the same read: nothing more to read ahead.
                    await self._peer_done(deliver_scope)
                # Usually the handler is just behind: read ahead only when it really stalls.
                with trio.move_on_after(READ_AHEAD_AFTER):
                    await self._deliver_waiting()
                if backlog or self._queued_bytes > high_water:
                    async with trio.open_nursery() as nursery:
                        if conn.state is ConnectionState.OPEN:
                            nursery.start_soon(self._read_ahead, deliver_scope)
                        await self._deliver_waiting()
                        nursery.cancel_scope.cancel()
            self._deliver_scope = None
            if deliver_scope.cancelled_caught:
                break  # close() or the deadline: drop what is left
        self._drop_backlog()

    async def _deliver_waiting(self) -> None:
        backlog = self._backlog
        assert backlog is not None
        queue = self._queue
        while backlog and not self._draining:
            if len(queue) < queue.size:  # room: no scheduler round trip per message
                queue.put_nowait(backlog[0])
            else:
                await queue.put(backlog[0])  # cancelled, it queues nothing
            self._enqueued(backlog.popleft())
        while self._queued_bytes > self._options.queue_high_water and not self._draining:
            self._resume_reading = trio.Event()
            await self._resume_reading.wait()

    async def _read_ahead(self, deliver_scope: trio.CancelScope) -> None:
        conn = self._conn
        try:
            budget = self._budget
            while self._backlog_bytes < self._options.queue_high_water:
                if budget is not None and budget.full:
                    return  # the server's budget is spent: TCP pushes back
                data = await self._read()
                if data:
                    self._process(data)
                    if self._send_replies() and self._writer.full and conn.state is ConnectionState.OPEN:
                        await self._writer.wait_room()  # pongs to a peer that does not read
                else:
                    conn.receive_data(b"")
                if conn.end_of_stream or conn.state is not ConnectionState.OPEN:
                    break
            else:
                return  # the backlog is full: TCP pushes back until the handler catches up
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._stream_failed()
        await self._peer_done(deliver_scope)

    async def _peer_done(self, deliver_scope: trio.CancelScope) -> None:
        """The peer has sent all it will (or is gone) while the handler is behind."""
        conn = self._conn
        writer = self._writer
        if conn.may_close_transport and not writer.broken and not writer.closed:
            # Closing handshake done: the server closes TCP now (§7.1.1), not after the backlog.
            with trio.CancelScope(shield=True), trio.move_on_after(self._options.close_timeout):
                await writer.close()
        deadline = trio.current_time() + self._options.close_timeout  # for the handler to take the rest
        deliver_scope.deadline = min(deliver_scope.deadline, deadline)

    async def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7) or close it for a policy: the handler may first
        take and answer what came before (``close_timeout``), then the close frame goes out."""
        with trio.move_on_after(self._options.close_timeout):
            while self._unreceived and not self._draining:
                self._drained = trio.Event()
                await self._drained.wait()
            await trio.lowlevel.checkpoint()  # the handler's answer to the last message goes first
            await self._writer.close_frame_after_message(self._conn, code, reason)

    async def _await_peer_close(self) -> None:
        """After a policy close: drop what comes until the peer's close frame (``close_timeout``
        at most), so that the peer reads our close frame instead of a reset."""
        conn = self._conn
        with trio.move_on_after(self._options.close_timeout):
            while conn.state is not ConnectionState.CLOSED:
                data = await self._read()
                if not data:
                    conn.receive_data(b"")
                    return
                self._process(data)
