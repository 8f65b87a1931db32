"""The connection: a :class:`WebSocket` over any ``trio.abc.Stream``.

One reader task (the only reader of the stream) feeds the sans-I/O protocol and puts whole messages into
a bounded memory channel; any number of tasks send through one writer (``_writer.py``): whole frames go
into its outbox under a lock, and its task writes them, many per system call.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import logging
import os
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, final

import attrs
import trio

from ._exceptions import WebSocketDisconnect, check_close_reason
from ._io import close_socket, receive_some, send_all
from ._limits import MessageMeter
from ._options import WebSocketOptions, WebSocketState, answer_and_linger
from ._queue import MessageQueue
from ._request import URL, QueryParams, Request
from ._writer import FrameWriter, checkpoint, resumed, yield_if_due
from .protocol import (
    BytesMessage,
    CloseCode,
    CloseReceived,
    Connection,
    ConnectionState,
    LocalProtocolError,
    Pong,
    PreparedMessage,
    Role,
    TextMessage,
    error_response,
)

if TYPE_CHECKING:
    from ._routing import Route
    from .protocol import Headers

__all__ = ["WebSocket", "WebSocketOptions", "WebSocketState", "answer_and_linger"]

logger = logging.getLogger("trio_ws")

_RECEIVE_SIZE = 65536
# How long the reader waits for a handler that is behind before it reads ahead (to see a close frame).
_READ_AHEAD_AFTER = 0.05


@final
class WebSocket:
    """One WebSocket connection, server or client side.

    Receive with :meth:`receive_text`, :meth:`receive_bytes`, :meth:`receive_json`, :meth:`receive`
    or the ``iter_*`` methods; send with ``send_*``; end with :meth:`close`. On the server, call
    :meth:`accept` (or :meth:`reject`) first; ``request`` holds the upgrade request.

    Error handling: once the connection is closed, receives (after every earlier message) and sends
    raise :class:`WebSocketDisconnect` with the close code. Receiving from two tasks at once raises
    :class:`trio.BusyResourceError`.
    """

    __slots__ = (
        "_accept_hook",
        "_backlog",
        "_backlog_bytes",
        "_broken",
        "_close_code",
        "_close_reason",
        "_conn",
        "_deliver_scope",
        "_drained",
        "_draining",
        "_lock",
        "_meter",
        "_nursery",
        "_over_limit",
        "_pings",
        "_queue",
        "_queued_bytes",
        "_reader_done",
        "_reader_finished",
        "_receiving",
        "_resume_reading",
        "_round_trips",
        "_stream_closed",
        "_unreceived",
        "_writer",
        "application_state",
        "auth",
        "client",
        "client_state",
        "extensions",
        "latency",
        "options",
        "refused_status",
        "request",
        "role",
        "stream",
        "subprotocol",
        "supported_subprotocols",
        "user",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        role: Role,
        options: WebSocketOptions,
        *,
        request: Request | None = None,
        subprotocol: str | None = None,
        client: tuple[str, int] | None = None,
    ) -> None:
        self.stream = stream
        self.role = role
        self.options = options
        #: The opening request (server side), or the request this client sent.
        self.request = request
        #: Subprotocols the server speaks here (set by the server, narrowed by a route).
        self.supported_subprotocols: tuple[str, ...] = ()
        #: The negotiated subprotocol, once accepted.
        self.subprotocol = subprotocol
        #: The peer's ``(host, port)``, when the stream is a socket.
        self.client = client
        #: The negotiated extensions, as in the ``Sec-WebSocket-Extensions`` response header.
        self.extensions: list[str] = []
        self.client_state = WebSocketState.CONNECTING
        self.application_state = WebSocketState.CONNECTING
        #: Round-trip time of the last ping answered, in seconds.
        self.latency: float | None = None
        #: The authenticated principal (server side, when an ``auth`` backend accepted the request).
        self.user: Any = None
        #: The authentication backend that accepted it.
        self.auth: Any = None
        #: The HTTP status of :meth:`reject`, if the handshake was refused.
        self.refused_status: int | None = None
        self._meter: MessageMeter | None = None
        self._over_limit = False
        self._conn: Connection | None = None
        # Held for the whole of a fragmented message, so that no other message gets in between.
        self._lock: trio.StrictFIFOLock | None = None  # made when first needed (see _write_lock)
        self._writer: FrameWriter | None = None
        self._queue: MessageQueue[TextMessage | BytesMessage] = MessageQueue(options.max_queue)
        self._queued_bytes = 0
        self._resume_reading: trio.Event | None = None
        self._drained: trio.Event | None = None
        self._unreceived = 0  # messages delivered to the queue that no receive() has returned yet
        # Messages parsed but not yet in the queue (it was full); bounded by queue_high_water bytes.
        # (A deque only while there is one: an idle connection holds none.)
        self._backlog: collections.deque[TextMessage | BytesMessage] | None = None
        self._backlog_bytes = 0
        self._deliver_scope: trio.CancelScope | None = None  # while the reader waits for the handler
        self._draining = False
        self._receiving = False
        self._broken = False
        self._reader_finished = False
        self._reader_done: trio.Event | None = None  # made when close() waits for the reader
        self._stream_closed = False  # the reader closed the stream (the server need not)
        self._pings: dict[bytes, tuple[float, trio.Event]] = {}  # payload -> (sent at, answered)
        self._round_trips: dict[bytes, float] = {}  # payload -> seconds, until ping() takes it
        self._nursery: trio.Nursery | None = None
        self._close_code: int | None = None
        self._close_reason = ""
        # Set by the server: answers the handshake with 101 and starts the connection.
        self._accept_hook: (
            Callable[[WebSocket, str | None, list[tuple[str, str]]], Awaitable[None]] | None
        ) = None

    # ------------------------------------------------------------- properties

    @property
    def nursery(self) -> trio.Nursery:
        """The connection's nursery: tasks started here end with the connection."""
        if self._nursery is None:
            raise RuntimeError("the connection is not open")
        return self._nursery

    @property
    def close_code(self) -> int | None:
        """The close code once the connection is closed (see :class:`WebSocketDisconnect`)."""
        return self._close_code

    @property
    def close_reason(self) -> str:
        """The close reason once the connection is closed."""
        return self._close_reason

    def _request(self) -> Request:
        if self.request is None:
            raise RuntimeError("this WebSocket has no request")
        return self.request

    @property
    def messages_received(self) -> int:
        """Whole data messages received so far."""
        return 0 if self._conn is None else self._conn.messages_received

    @property
    def bytes_received(self) -> int:
        """Payload bytes of the messages received so far (after decompression)."""
        return 0 if self._conn is None else self._conn.bytes_received

    @property
    def messages_sent(self) -> int:
        """Whole data messages sent so far."""
        return 0 if self._conn is None else self._conn.messages_sent

    @property
    def bytes_sent(self) -> int:
        """Payload bytes of the messages sent so far (before compression)."""
        return 0 if self._conn is None else self._conn.bytes_sent

    @property
    def path(self) -> str:
        """The request's path, percent-decoded, without the query string."""
        return "/" if self.request is None else self.request.path

    @property
    def url(self) -> URL:
        """The request's URL (``ws.url.path``, ``.query``, ``.hostname``, ``.port``, ``.scheme``...)."""
        return self._request().url

    @property
    def headers(self) -> Headers:
        """The request's headers: case-insensitive, ``getlist`` for repeats, ``raw`` bytes."""
        return self._request().headers

    @property
    def query_params(self) -> QueryParams:
        """The request's query parameters (``["k"]`` first value, ``getlist("k")`` all)."""
        return self._request().query_params

    @property
    def cookies(self) -> dict[str, str]:
        """The request's cookies."""
        return self._request().cookies

    @property
    def path_params(self) -> dict[str, Any]:
        """The matched route's path parameters, converted."""
        return self._request().path_params

    def _route(self, route: Route, params: dict[str, Any]) -> None:
        """Apply a matched route (before accept): its parameters, options and subprotocols."""
        request = self._request()
        request.path_params = params
        if route.options:
            options = attrs.evolve(self.options, **route.options)
            if options.max_queue != self.options.max_queue:
                self._queue = MessageQueue(options.max_queue)
            self.options = options
        if route.subprotocols is not None:
            self.supported_subprotocols = route.subprotocols

    @property
    def is_closed(self) -> bool:
        """Whether the connection is closed or closing: sends would raise."""
        return self._conn is None or self._conn.state is not ConnectionState.OPEN or self._broken

    # ------------------------------------------------------------- lifecycle

    def _start(self, conn: Connection, nursery: trio.Nursery, trailing: bytes = b"") -> None:
        self._conn = conn
        self._nursery = nursery
        options = self.options
        self._writer = FrameWriter(
            self.stream, nursery, options.write_high_water, options.write_low_water, self._writer_broke
        )
        self.client_state = self.application_state = WebSocketState.CONNECTED
        if self.options.message_limit is not None:
            self._meter = MessageMeter(self.options.message_limit, trio.current_time())
        nursery.start_soon(self._reader, trailing)
        if self.options.ping_interval is not None:
            nursery.start_soon(self._keepalive)

    async def _send_raw(self, data: bytes) -> None:
        """Write under the lock held by the caller; a write cut short breaks the connection."""
        try:
            await send_all(self.stream, data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._broken = True
            raise WebSocketDisconnect(CloseCode.ABNORMAL_CLOSURE, "connection lost") from None
        except BaseException:
            self._broken = True  # cancelled part-way: the stream may hold half a frame
            raise

    @property
    def _write_lock(self) -> trio.StrictFIFOLock:
        if self._lock is None:
            self._lock = trio.StrictFIFOLock()
        return self._lock

    def _writer_broke(self) -> None:
        self._broken = True

    async def _write(self, make: Any, *args: Any) -> None:
        """Build a frame with ``make(*args)`` and queue it for the writer.

        Cancelled, it has queued nothing; it waits only while the writer is over ``write_high_water``
        or a fragmented message holds the lock. Otherwise it returns without a scheduler round trip
        unless one is due (:func:`checkpoint`): the writer task writes what queued up meanwhile.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        writer = self._writer
        if writer is None:
            raise RuntimeError("send before the connection was accepted")
        if writer.full:
            await writer.wait_room()
        lock = self._lock
        try:
            if lock is not None and lock.locked():
                async with lock:
                    self._queue_frame(writer, make, *args)
            else:
                self._queue_frame(writer, make, *args)
        except WebSocketDisconnect:
            await trio.lowlevel.cancel_shielded_checkpoint()  # a loop of failing sends still yields
            raise
        await yield_if_due()

    def _queue_frame(self, writer: FrameWriter, make: Any, *args: Any) -> None:
        if self._broken:
            raise self._disconnect()
        try:
            data = make(*args)
        except LocalProtocolError:
            raise self._disconnect() from None
        writer.write(data)

    def _closed_already(self) -> bool:
        """Start closing (the handler is done with the connection); ``True`` if the closing
        handshake is over already and there is nothing to wait for."""
        self.application_state = WebSocketState.DISCONNECTED
        self._draining = True
        return self._reader_finished

    def _close_if_open(self, conn: Connection, code: int, reason: str) -> None:
        if conn.state is ConnectionState.OPEN and not self._broken:
            self._send_close(code, reason)

    def _send_close(self, code: int, reason: str) -> None:
        assert self._conn is not None
        assert self._writer is not None
        self._writer.write(self._conn.send_close(code, reason))

    def _disconnect(self) -> WebSocketDisconnect:
        code = self._close_code
        if code is None:
            code, reason = self._current_close()
        else:
            reason = self._close_reason
        return WebSocketDisconnect(code, reason)

    def _current_close(self) -> tuple[int, str]:
        conn = self._conn
        if self._broken or conn is None:
            return CloseCode.ABNORMAL_CLOSURE, ""
        if conn.failure is not None:
            return conn.failure.code, conn.failure.reason
        if conn.close_received is not None:
            return conn.close_received.code, conn.close_received.reason
        if conn.close_sent is not None:
            code, reason = conn.close_sent
            if conn.end_of_stream:
                return CloseCode.ABNORMAL_CLOSURE, ""
            return (code if code is not None else CloseCode.NO_STATUS_RCVD), reason
        return CloseCode.ABNORMAL_CLOSURE, ""

    async def _reader(self, trailing: bytes) -> None:
        conn = self._conn
        assert conn is not None
        stream = self.stream
        data: bytes | bytearray = trailing
        try:
            while True:
                if data:
                    self._process(data)
                    if conn.has_data_to_send:
                        # A server's close reply: the reader leaves the loop (or, behind a full
                        # queue, goes to _peer_done) and writes it itself; no writer task for it.
                        closed = conn.state is ConnectionState.CLOSED and self.role is Role.SERVER
                        self._send_replies(start=not closed)
                    if self._backlog or self._queued_bytes > self.options.queue_high_water:
                        await self._deliver_backlog()
                    if conn.failure is not None:
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
            if self.role is Role.CLIENT and not conn.end_of_stream:
                # RFC 6455 §7.1.1: the server closes TCP first; wait for it, briefly.
                with trio.move_on_after(self.options.close_timeout):
                    while await receive_some(stream, _RECEIVE_SIZE):
                        pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, WebSocketDisconnect):
            self._stream_failed()
        finally:
            self.client_state = WebSocketState.DISCONNECTED
            if self._close_code is None:
                self._close_code, self._close_reason = self._current_close()
            self._queue.close()
            self._backlog = None
            self._reader_finished = True
            if self._reader_done is not None:
                self._reader_done.set()
            for _, waiter in self._pings.values():
                waiter.set()
            # What is queued goes first, then a polite close (TLS close_notify), bounded;
            # cancelled, it closes forcefully.
            with trio.CancelScope(shield=True, deadline=trio.current_time() + self.options.close_timeout):
                await self._flushed()  # (a checkpoint)
                if not close_socket(stream):
                    await stream.aclose()
                self._stream_closed = True

    async def _await_peer_close(self) -> None:
        """After our close frame (a policy close): read and drop what still comes until the peer's
        close frame or the end of the stream, at most ``close_timeout``, so that the peer reads our
        close frame instead of a connection reset."""
        conn = self._conn
        assert conn is not None
        with trio.move_on_after(self.options.close_timeout):
            while conn.state is not ConnectionState.CLOSED:
                data = await receive_some(self.stream, _RECEIVE_SIZE)
                if not data:
                    conn.receive_data(b"")
                    return
                self._process(data)

    def _stream_failed(self) -> None:
        conn = self._conn
        assert conn is not None
        # After a complete closing handshake, a ragged end (TLS without close_notify) is fine.
        if conn.state is not ConnectionState.CLOSED or conn.failure is not None:
            self._broken = True

    def _process(self, data: bytes | bytearray) -> None:
        """Feed received bytes to the protocol; whole messages go to the backlog."""
        conn = self._conn
        assert conn is not None
        meter = self._meter
        for event in conn.receive_data(data):
            if isinstance(event, (TextMessage, BytesMessage)):
                if self._draining or self._over_limit:
                    continue
                if meter is not None and not meter.take(len(event.data), trio.current_time()):
                    self._over_limit = True  # this message and what follows are dropped
                    continue
                if self._backlog is None:
                    self._backlog = collections.deque()
                self._backlog.append(event)
                self._backlog_bytes += len(event.data)
            elif isinstance(event, Pong):
                self._pong(event.payload)
            elif isinstance(event, CloseReceived):
                self.client_state = WebSocketState.DISCONNECTED

    def _send_replies(self, start: bool = True) -> None:
        """Queue the pongs and close reply the protocol made by itself (control frames may go
        between the fragments of a message). ``start=False``: the caller flushes them itself."""
        assert self._conn is not None
        assert self._writer is not None
        out = self._conn.data_to_send()
        if out:
            self._writer.write(out, start=start)

    def _enqueued(self, message: TextMessage | BytesMessage) -> None:
        size = len(message.data)
        self._backlog_bytes -= size
        self._queued_bytes += size
        self._unreceived += 1

    async def _deliver_backlog(self) -> None:
        """Move the backlog into the queue.

        Fast path: it all fits. Otherwise the queue is full (or holds over ``queue_high_water``
        bytes) and the reader waits for the handler. If that lasts (50 ms), it reads ahead into the backlog,
        bounded by ``queue_high_water`` bytes, so that a close frame from the peer is seen and
        answered even while the handler is not reading; from then on, the handler has
        ``close_timeout`` to take what is left before it is dropped. ``close()`` stops delivery.
        """
        if self._backlog is None:
            self._backlog = collections.deque()
        backlog = self._backlog
        send_nowait = self._queue.put_nowait
        try:
            while backlog:
                send_nowait(backlog[0])
                self._enqueued(backlog.popleft())
        except trio.WouldBlock:
            pass
        if not backlog and self._queued_bytes <= self.options.queue_high_water:
            self._backlog = None
            return
        conn = self._conn
        assert conn is not None
        with trio.CancelScope() as deliver_scope:
            self._deliver_scope = deliver_scope
            if conn.end_of_stream or conn.state is not ConnectionState.OPEN:
                # The peer's close came in the same read: nothing more to read ahead.
                await self._peer_done(deliver_scope)
            # Usually the handler is just behind: read ahead only when it really stalls.
            with trio.move_on_after(_READ_AHEAD_AFTER):
                await self._deliver_waiting()
            if self._backlog or self._queued_bytes > self.options.queue_high_water:
                async with trio.open_nursery() as nursery:
                    if conn.state is ConnectionState.OPEN and conn.failure is None:
                        nursery.start_soon(self._read_ahead, deliver_scope)
                    await self._deliver_waiting()
                    nursery.cancel_scope.cancel()
        self._backlog = None  # with what close() or the deadline left undelivered
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
        while self._queued_bytes > self.options.queue_high_water and not self._draining:
            self._resume_reading = trio.Event()
            await self._resume_reading.wait()

    async def _read_ahead(self, deliver_scope: trio.CancelScope) -> None:
        conn = self._conn
        assert conn is not None
        try:
            while self._backlog_bytes < self.options.queue_high_water:
                data = await receive_some(self.stream, _RECEIVE_SIZE)
                if data:
                    self._process(data)
                    self._send_replies()
                else:
                    conn.receive_data(b"")
                if conn.end_of_stream or conn.failure is not None or conn.state is not ConnectionState.OPEN:
                    break
            else:
                return  # the backlog is full: TCP pushes back until the handler catches up
        except (trio.BrokenResourceError, trio.ClosedResourceError, WebSocketDisconnect):
            self._stream_failed()
        await self._peer_done(deliver_scope)

    async def _peer_done(self, deliver_scope: trio.CancelScope) -> None:
        """The peer has sent all it will (or is gone) while the handler is behind."""
        conn = self._conn
        assert conn is not None
        if conn.state is ConnectionState.CLOSED and self.role is Role.SERVER and not self._broken:
            # The closing handshake is complete: the server closes TCP now (RFC 6455 §7.1.1),
            # not when the handler has taken the backlog, which is already in memory.
            with trio.CancelScope(shield=True), trio.move_on_after(self.options.close_timeout):
                await self._flushed()
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self.stream.aclose()
        # The handler has close_timeout to take what is left.
        deliver_scope.deadline = min(deliver_scope.deadline, trio.current_time() + self.options.close_timeout)

    async def _flushed(self) -> None:
        if self._writer is not None:
            await self._writer.flushed()

    async def _fail(self, code: int, reason: str) -> None:
        """Fail the connection after a protocol error (RFC 6455 §7.1.7): let the handler take the
        messages that came before it and answer them (bounded by ``close_timeout``), then send the
        close frame; the caller closes the stream."""
        conn = self._conn
        assert conn is not None
        with trio.move_on_after(self.options.close_timeout):
            while self._unreceived and not self._draining:
                self._drained = trio.Event()
                await self._drained.wait()
            await trio.lowlevel.checkpoint()  # the handler's answer to the last message goes first
            async with self._write_lock:
                self._close_if_open(conn, code, reason)

    def _dequeued(self, message: TextMessage | BytesMessage) -> None:
        self._queued_bytes -= len(message.data)
        self._unreceived -= 1
        if self._drained is not None and not self._unreceived:
            self._drained.set()
        resume = self._resume_reading
        if resume is not None and self._queued_bytes <= self.options.queue_low_water:
            self._resume_reading = None
            resume.set()

    def _pong(self, payload: bytes) -> None:
        if payload not in self._pings:
            return
        now = trio.current_time()
        # A pong answers its ping and every earlier one (RFC 6455 §5.5.3).
        for key in list(self._pings):
            sent_at, event = self._pings.pop(key)
            self._round_trips[key] = now - sent_at
            event.set()
            if key == payload:
                self.latency = now - sent_at
                break

    async def _keepalive(self) -> None:
        interval = self.options.ping_interval
        assert interval is not None
        while True:
            await trio.sleep(interval)
            try:
                with trio.move_on_after(self.options.ping_timeout or float("inf")) as scope:
                    await self.ping()
            except WebSocketDisconnect:
                return
            if scope.cancelled_caught:
                logger.info("keepalive ping timed out; closing with 1011")
                await self.close(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
                return

    # ------------------------------------------------------------- handshake

    async def accept(
        self,
        subprotocol: str | None = None,
        headers: Sequence[tuple[str, str]] | None = None,
    ) -> None:
        """Accept the opening handshake (server side), with ``subprotocol`` (one the client offered)
        and extra response ``headers``. Raises :class:`RuntimeError` if already accepted or refused,
        :class:`ValueError` for a subprotocol the client did not offer."""
        accept = self._accept_hook
        if accept is None or self.application_state is not WebSocketState.CONNECTING:
            raise RuntimeError("accept() is only possible once, before the handshake is answered")
        await accept(self, subprotocol, list(headers or ()))

    async def reject(
        self,
        status: int = 403,
        body: str | bytes | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Refuse the opening handshake with an HTTP ``status`` (4xx/5xx), ``body`` and ``headers``."""
        if self.application_state is not WebSocketState.CONNECTING or self.role is Role.CLIENT:
            raise RuntimeError("reject() is only possible before the handshake is answered")
        if not 400 <= status <= 599:
            raise ValueError(f"reject() needs a 4xx or 5xx status, not {status}")
        self.application_state = WebSocketState.DISCONNECTED
        self.client_state = WebSocketState.DISCONNECTED
        self._close_code = CloseCode.ABNORMAL_CLOSURE
        self.refused_status = status
        await answer_and_linger(
            self.stream, error_response(status, body, headers), self.options.close_timeout
        )
        await trio.aclose_forcefully(self.stream)

    # --------------------------------------------------------------- receive

    async def receive(self) -> str | bytes:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Raises :class:`WebSocketDisconnect` once the connection is closed and every earlier message
        was received.
        """
        if self._conn is None:
            raise RuntimeError("receive() before the connection was accepted")
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving from this WebSocket")
        await trio.lowlevel.checkpoint_if_cancelled()
        self._receiving = True
        try:
            queue = self._queue
            try:
                message: TextMessage | BytesMessage | None = queue.get_nowait()
            except trio.WouldBlock:
                message = None  # (not awaited in here: the exception would live as long as the wait)
            if message is None:
                await queue.wait()
                try:
                    message = queue.get_nowait()
                except trio.EndOfChannel:  # after a wait: the scheduler has run
                    raise self._disconnect() from None
                resumed()
            else:
                await yield_if_due()  # a message was waiting: a scheduler round trip only when due
        except trio.EndOfChannel:
            await trio.lowlevel.cancel_shielded_checkpoint()  # a loop of failing receives yields
            raise self._disconnect() from None
        finally:
            self._receiving = False
        self._dequeued(message)
        return message.data

    async def receive_text(self) -> str:
        """The next message, which must be text; a binary one closes the connection with 1003 and
        raises :class:`WebSocketDisconnect`."""
        data = await self.receive()
        if not isinstance(data, str):
            await self._wrong_type("a text message was expected, binary arrived")
        assert isinstance(data, str)
        return data

    async def receive_bytes(self) -> bytes:
        """The next message, which must be binary; a text one closes with 1003 and raises."""
        data = await self.receive()
        if not isinstance(data, bytes):
            await self._wrong_type("a binary message was expected, text arrived")
        assert isinstance(data, bytes)
        return data

    async def _wrong_type(self, reason: str) -> None:
        await self.close(CloseCode.UNSUPPORTED_DATA, reason)
        raise WebSocketDisconnect(CloseCode.UNSUPPORTED_DATA, reason)

    async def receive_json(self, mode: Literal["text", "binary"] = "text") -> Any:
        """The next message parsed as JSON, from a text (``mode="text"``) or binary message.

        Invalid JSON closes the connection with 1007 and raises :class:`WebSocketDisconnect`."""
        data = await (self.receive_text() if mode == "text" else self.receive_bytes())
        try:
            return json.loads(data)
        except ValueError:
            await self.close(CloseCode.INVALID_FRAME_PAYLOAD_DATA, "invalid JSON")
            raise WebSocketDisconnect(CloseCode.INVALID_FRAME_PAYLOAD_DATA, "invalid JSON") from None

    def iter_text(self) -> AsyncIterator[str]:
        """Text messages until the peer closes with 1000 or 1001 (then the loop ends); another close
        code raises :class:`WebSocketDisconnect`."""
        return _Messages(self, self.receive_text)

    def iter_bytes(self) -> AsyncIterator[bytes]:
        """Binary messages until a normal close (see :meth:`iter_text`)."""
        return _Messages(self, self.receive_bytes)

    def iter_json(self, mode: Literal["text", "binary"] = "text") -> AsyncIterator[Any]:
        """JSON messages until a normal close (see :meth:`iter_text`)."""

        async def receive() -> Any:
            return await self.receive_json(mode)

        return _Messages(self, receive)

    # ------------------------------------------------------------------ send

    def _protocol(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("send before the connection was accepted")
        return self._conn

    async def send_text(self, data: str) -> None:
        """Send one text message."""
        await self._write(self._protocol().send_text, data)

    async def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        """Send one binary message."""
        await self._write(self._protocol().send_bytes, data)

    async def send_prepared(self, message: PreparedMessage) -> None:
        """Send a message prepared once for many connections (what a broadcast does): without
        compression the same frame bytes go to every connection."""
        await self._write(self._protocol().send_prepared, message)

    async def _send_prepared_now(self, message: PreparedMessage) -> None:
        """:meth:`send_prepared` for a task that only sends (the Hub's): when the writer is idle, the
        frame is written from this task, without waking the writer task."""
        await trio.lowlevel.checkpoint_if_cancelled()
        writer = self._writer
        lock = self._lock
        if writer is None or self._broken or (lock is not None and lock.locked()):
            return await self._write(self._protocol().send_prepared, message)
        if writer.full:
            await writer.wait_room()
        try:
            data = self._protocol().send_prepared(message)
        except LocalProtocolError:
            await trio.lowlevel.cancel_shielded_checkpoint()
            raise self._disconnect() from None
        if not await writer.send_now(data):
            await yield_if_due()
        if self._broken:
            raise self._disconnect()

    async def send_json(self, data: Any, mode: Literal["text", "binary"] = "text") -> None:
        """Send ``data`` encoded as JSON, in a text (``mode="text"``) or binary message."""
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        if mode == "text":
            await self.send_text(text)
        else:
            await self.send_bytes(text.encode("utf-8"))

    async def send_fragments(self, fragments: Iterable[str | bytes] | AsyncIterable[str | bytes]) -> None:
        """Send one message in fragments, one frame each; all ``str`` (text) or all ``bytes``.

        Other messages wait until this one is complete; pings and pongs may still go in between.
        """
        conn = self._protocol()
        writer = self._writer
        assert writer is not None
        async with self._write_lock:
            previous: str | bytes | None = None
            if isinstance(fragments, AsyncIterable):
                async for fragment in fragments:
                    if previous is not None:
                        await self._send_fragment(writer, conn, previous, fin=False)
                    previous = fragment
            else:
                for fragment in fragments:
                    if previous is not None:
                        await self._send_fragment(writer, conn, previous, fin=False)
                    previous = fragment
            if previous is None:
                raise ValueError("send_fragments() needs at least one fragment")
            await self._send_fragment(writer, conn, previous, fin=True)

    async def _send_fragment(
        self, writer: FrameWriter, conn: Connection, data: str | bytes, fin: bool
    ) -> None:
        if writer.full:
            await writer.wait_room()
        self._queue_frame(writer, functools.partial(conn.send_fragment, fin=fin), data)
        await checkpoint()

    async def ping(self, payload: bytes | None = None) -> float:
        """Send a ping and wait for its pong; return the round-trip time in seconds (also kept in
        :attr:`latency`). Raises :class:`WebSocketDisconnect` if the connection closes first."""
        if payload is None:
            payload = os.urandom(4)
            while payload in self._pings:
                payload = os.urandom(4)
        elif payload in self._pings:
            raise ValueError("a ping with this payload is already waiting for its pong")
        event = trio.Event()
        sent_at = trio.current_time()
        self._pings[payload] = (sent_at, event)
        try:
            await self._write(self._protocol().send_ping, payload)
            await event.wait()
        except BaseException:
            self._pings.pop(payload, None)
            raise
        if payload in self._pings:  # woken by the end of the connection, not by a pong
            del self._pings[payload]
            raise self._disconnect()
        return self._round_trips.pop(payload)

    async def pong(self, payload: bytes = b"") -> None:
        """Send an unsolicited pong (a one-way heartbeat)."""
        await self._write(self._protocol().send_pong, payload)

    # ----------------------------------------------------------------- close

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the connection with ``code`` and ``reason`` and wait for the closing handshake,
        at most ``close_timeout`` seconds, shielded from cancellation; then the stream is closed.

        Before :meth:`accept` on a server, it refuses the handshake with HTTP 403. Closing an
        already closed connection does nothing. Messages that arrive meanwhile are discarded.
        Raises ``ValueError`` for a reason with CR or LF (and ``LocalProtocolError`` for one over 123
        bytes of UTF-8).
        """
        check_close_reason(reason)
        if self._conn is None:
            if self.role is Role.SERVER and self.application_state is WebSocketState.CONNECTING:
                await self.reject(403)
            else:
                await trio.lowlevel.checkpoint()
            return
        if self._closed_already():
            await trio.lowlevel.checkpoint()
            return
        conn = self._conn
        with trio.CancelScope(shield=True, deadline=trio.current_time() + self.options.close_timeout):
            if self._deliver_scope is not None:
                self._deliver_scope.cancel()
            if self._resume_reading is not None:
                self._resume_reading.set()
            lock = self._lock
            if lock is not None and lock.locked():  # a fragmented message is going out: after it
                async with lock:
                    self._close_if_open(conn, code, reason)
            else:
                self._close_if_open(conn, code, reason)
            if not self._reader_finished:
                if self._reader_done is None:
                    self._reader_done = trio.Event()
                await self._reader_done.wait()
        if not self._reader_finished:
            self._broken = True
            await trio.aclose_forcefully(self.stream)
        await trio.lowlevel.checkpoint()


@final
class _Messages(AsyncIterator[Any]):
    """Iterates over received messages; ends on close 1000/1001 (no async generator, no nursery)."""

    def __init__(self, ws: WebSocket, receive: Any) -> None:
        self._ws = ws
        self._receive = receive

    def __aiter__(self) -> _Messages:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._receive()
        except WebSocketDisconnect as exc:
            if exc.code in (CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY):
                raise StopAsyncIteration from None
            raise
