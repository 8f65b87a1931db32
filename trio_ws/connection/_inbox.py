"""The inbox: the reader task, the bounded queue of received messages, and receive backpressure.

The reader task is the only reader of the stream. It feeds the bytes to the sans-I/O protocol,
answers pings and the peer's close frame (through the writer), and puts whole messages into a
bounded queue (``max_queue`` messages). Flow control, all of it here:

- While the queue is full, or holds more than ``queue_high_water`` bytes, the reader stops reading
  the stream, so TCP pushes back on the peer; it reads again once the handler has brought the queue
  down to ``queue_low_water`` bytes.
- If the handler stays behind for a while (:data:`READ_AHEAD_AFTER`), the reader reads ahead into a
  backlog bounded by ``queue_high_water`` bytes, so that a close frame from the peer is seen and
  answered even while the handler is not reading. Every message costs at least
  :data:`MESSAGE_OVERHEAD` bytes against these bounds, so empty messages cannot pile up.
- While the writer's outbox is over ``write_high_water`` (pongs a peer that never reads makes us
  send), the reader stops reading too.
- Nothing read is lost: a message parsed by the read-ahead reaches the queue, however the delivery
  and the read-ahead interleave; only a close of ours (``close()``) or the deadline after the
  peer's close (``close_timeout``) drops what the handler has not taken.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import final

import trio

from ..protocol import BytesMessage, CloseCode, CloseReceived, Connection, ConnectionState, Pong, TextMessage
from ._io import receive_some
from ._limits import MessageMeter
from ._options import WebSocketOptions
from ._pacing import note_resumed, yield_if_due
from ._pings import PingTable
from ._queue import MessageQueue
from ._writer import Writer

__all__ = ["MESSAGE_OVERHEAD", "READ_AHEAD_AFTER", "Inbox"]

Message = TextMessage | BytesMessage

_RECEIVE_SIZE = 65536
#: How long the reader waits for a handler that is behind before it reads ahead (to see a close frame).
READ_AHEAD_AFTER = 0.05
#: What a received message costs at the least against the queue's and the read-ahead's byte
#: bounds, however short its payload (about what its objects take in memory).
MESSAGE_OVERHEAD = 64


@final
class Inbox:
    """The receiving half of one connection: see the module.

    ``on_closed`` is called once, when the reader is done (the closing handshake is over, the
    connection failed, or the stream ended) and before the stream is closed.
    """

    __slots__ = (
        "_backlog",
        "_backlog_bytes",
        "_conn",
        "_deliver_scope",
        "_done",
        "_drained",
        "_draining",
        "_meter",
        "_on_closed",
        "_options",
        "_over_limit",
        "_queue",
        "_queued_bytes",
        "_receiving",
        "_resume_reading",
        "_stream",
        "_unreceived",
        "_writer",
        "finished",
        "peer_closed",
        "pings",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        conn: Connection,
        writer: Writer,
        options: WebSocketOptions,
        on_closed: Callable[[], None],
    ) -> None:
        self._stream = stream
        self._conn = conn
        self._writer = writer
        self._options = options
        #: The connection's pings waiting for a pong (set with the first ping).
        self.pings: PingTable | None = None
        self._on_closed = on_closed
        self._queue: MessageQueue[Message] = MessageQueue(options.max_queue)
        self._queued_bytes = 0
        self._unreceived = 0  # messages delivered to the queue that no receive() has returned yet
        # Messages parsed but not yet in the queue (it was full); a deque only while there is one.
        self._backlog: collections.deque[Message] | None = None
        self._backlog_bytes = 0
        self._resume_reading: trio.Event | None = None
        self._drained: trio.Event | None = None
        self._deliver_scope: trio.CancelScope | None = None  # while the reader waits for the handler
        self._done: trio.Event | None = None  # made when someone waits for the reader
        limit = options.message_limit
        self._meter = None if limit is None else MessageMeter(limit, trio.current_time())
        self._draining = False  # close() was called: deliver nothing more
        self._over_limit = False
        self._receiving = False
        #: The peer's close frame arrived.
        self.peer_closed = False
        #: The reader is done: nothing more will be received.
        self.finished = False

    def start(self, nursery: trio.Nursery, trailing: bytes) -> None:
        """Start the reader task; ``trailing``: bytes that came after the opening handshake."""
        nursery.start_soon(self._run, trailing)

    @property
    def pending_messages(self) -> int:
        """Messages received and not yet taken by :meth:`receive`."""
        return len(self._queue) + (len(self._backlog) if self._backlog else 0)

    @property
    def pending_bytes(self) -> int:
        """What they cost against the byte bounds (their payload, :data:`MESSAGE_OVERHEAD` at least
        each)."""
        return self._queued_bytes + self._backlog_bytes

    # ----------------------------------------------------------- the handler

    async def receive(self) -> Message | None:
        """The next message, or ``None`` once the reader is done and every message was taken.
        A checkpoint (a schedule point only when one is due, if a message was waiting).
        ``trio.BusyResourceError`` if another task is receiving."""
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving from this WebSocket")
        await trio.lowlevel.checkpoint_if_cancelled()
        self._receiving = True
        queue = self._queue
        try:
            try:
                message: Message | None = queue.get_nowait()
            except trio.WouldBlock:
                message = None  # (not awaited in here: the exception would live as long as the wait)
            except trio.EndOfChannel:
                await trio.lowlevel.cancel_shielded_checkpoint()  # a loop of failing receives yields
                return None
            if message is None:
                await queue.wait()
                try:
                    message = queue.get_nowait()
                except trio.EndOfChannel:  # after a wait: the scheduler has run
                    return None
                note_resumed()
            else:
                await yield_if_due()  # a message was waiting: a scheduler round trip only when due
        finally:
            self._receiving = False
        self._dequeued(message)
        return message

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

    def _dequeued(self, message: Message) -> None:
        self._queued_bytes -= max(len(message.data), MESSAGE_OVERHEAD)
        self._unreceived -= 1
        if self._drained is not None and not self._unreceived:
            self._drained.set()
        resume = self._resume_reading
        if resume is not None and self._queued_bytes <= self._options.queue_low_water:
            self._resume_reading = None
            resume.set()

    # ------------------------------------------------------------ the reader

    async def _run(self, trailing: bytes) -> None:
        conn = self._conn
        stream = self._stream
        writer = self._writer
        high_water = self._options.queue_high_water
        data: bytes | bytearray = trailing
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
                data = await receive_some(stream, _RECEIVE_SIZE)
                if not data:
                    conn.receive_data(b"")
                    break
            if conn.state is ConnectionState.CLOSED and not conn.may_close_transport:
                # RFC 6455 §7.1.1: the server closes TCP first; wait for it, briefly.
                with trio.move_on_after(self._options.close_timeout):
                    while await receive_some(stream, _RECEIVE_SIZE):
                        pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._stream_failed()
        finally:
            self.finished = True
            self._queue.close()
            self._backlog = None
            self._backlog_bytes = 0
            self._on_closed()
            if self._done is not None:
                self._done.set()
            # What is queued goes first, then a polite close (TLS close_notify), bounded;
            # cancelled, it closes forcefully.
            with trio.CancelScope(shield=True, deadline=trio.current_time() + self._options.close_timeout):
                if not writer.closed:
                    await writer.close()  # (a checkpoint)

    def _stream_failed(self) -> None:
        conn = self._conn
        # After a complete closing handshake, a ragged end (TLS without close_notify) is fine.
        if conn.state is not ConnectionState.CLOSED or conn.failure is not None:
            self._writer.mark_broken()

    def _process(self, data: bytes | bytearray) -> None:
        """Feed received bytes to the protocol; whole messages go to the backlog."""
        meter = self._meter
        for event in self._conn.receive_data(data):
            if isinstance(event, (TextMessage, BytesMessage)):
                if self._draining or self._over_limit:
                    continue
                if meter is not None and not meter.take(len(event.data), trio.current_time()):
                    self._over_limit = True  # this message and what follows are dropped
                    continue
                if self._backlog is None:
                    self._backlog = collections.deque()
                self._backlog.append(event)
                self._backlog_bytes += max(len(event.data), MESSAGE_OVERHEAD)
            elif isinstance(event, Pong):
                if self.pings is not None:
                    self.pings.answered(event.payload, trio.current_time())
            elif isinstance(event, CloseReceived):
                self.peer_closed = True

    def _send_replies(self, start: bool = True) -> None:
        """Queue the pongs and the close reply the protocol made by itself (control frames may go
        between the fragments of a message). ``start=False``: the caller flushes them itself."""
        out = self._conn.data_to_send()
        if out:
            self._writer.write(out, start=start)

    def _enqueued(self, message: Message) -> None:
        size = max(len(message.data), MESSAGE_OVERHEAD)
        self._backlog_bytes -= size
        self._queued_bytes += size
        self._unreceived += 1

    async def _deliver_backlog(self) -> None:
        """Move the backlog into the queue, waiting for the handler when it is full.

        Fast path: it all fits. Otherwise the reader waits; after :data:`READ_AHEAD_AFTER` it
        reads ahead (see the module) while it waits. Messages the read-ahead parsed after the
        delivery caught up are delivered on the next round, never dropped. ``close()`` (or the
        handler's ``close_timeout`` after the peer is done) ends delivery: what is left is dropped.
        """
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
        self._backlog = None
        self._backlog_bytes = 0

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
            while self._backlog_bytes < self._options.queue_high_water:
                data = await receive_some(self._stream, _RECEIVE_SIZE)
                if data:
                    self._process(data)
                    self._send_replies()
                    if self._writer.full and conn.state is ConnectionState.OPEN:
                        await self._writer.wait_room()
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
            # The closing handshake is complete: the server closes TCP now (RFC 6455 §7.1.1),
            # not when the handler has taken the backlog, which is already in memory.
            with trio.CancelScope(shield=True), trio.move_on_after(self._options.close_timeout):
                await writer.close()
        # The handler has close_timeout to take what is left.
        deadline = trio.current_time() + self._options.close_timeout
        deliver_scope.deadline = min(deliver_scope.deadline, deadline)

    async def _fail(self, code: int, reason: str) -> None:
        """Fail the connection after a protocol error (RFC 6455 §7.1.7), or close it for a policy:
        let the handler take the messages that came before and answer them (bounded by
        ``close_timeout``), then send the close frame; the caller closes the stream."""
        with trio.move_on_after(self._options.close_timeout):
            while self._unreceived and not self._draining:
                self._drained = trio.Event()
                await self._drained.wait()
            await trio.lowlevel.checkpoint()  # the handler's answer to the last message goes first
            await self._writer.close_frame_after_message(self._conn, code, reason)

    async def _await_peer_close(self) -> None:
        """After our close frame (a policy close): read and drop what still comes until the peer's
        close frame or the end of the stream, at most ``close_timeout``, so that the peer reads our
        close frame instead of a connection reset."""
        conn = self._conn
        with trio.move_on_after(self._options.close_timeout):
            while conn.state is not ConnectionState.CLOSED:
                data = await receive_some(self._stream, _RECEIVE_SIZE)
                if not data:
                    conn.receive_data(b"")
                    return
                self._process(data)
