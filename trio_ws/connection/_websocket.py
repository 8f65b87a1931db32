"""The public API of one connection: :class:`WebSocket`. Its machinery is elsewhere: the inbox reads
and queues messages, the writer is the only path to the stream, the ping table matches pongs, a
server's pending handshake makes the 101; a client's starts with :func:`start_client`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, final

import attrs
import trio

from ..protocol import CloseCode, Connection, ConnectionState, Role
from ..protocol import error_response as http_error
from ._exceptions import WebSocketDisconnect, check_close
from ._inbox import Inbox
from ._messages import Messaging
from ._opening import Refusal, Registry, ServerHandshake
from ._options import WebSocketOptions, WebSocketState
from ._pacing import yield_if_due
from ._pings import PingTable, keepalive
from ._request import Request, RequestView
from ._scope import ScopeView
from ._writer import Writer, answer_and_linger

__all__ = ["WebSocket", "start_client"]


@final
class WebSocket(Messaging, RequestView, ScopeView):
    """One WebSocket connection, server or client side.

    Receive with :meth:`receive_text`, :meth:`receive_bytes`, :meth:`receive_json`, :meth:`receive`,
    the ``iter_*`` methods, ``async for message in ws`` or :meth:`receive_streaming` (a message in
    chunks); send with ``send_*``; end with :meth:`close`. On the server, call :meth:`accept` (or
    :meth:`reject`) first; ``request`` holds the upgrade request.

    Error handling: once the connection is closed, receives (after every earlier message) and sends
    raise :class:`WebSocketDisconnect` with the close code. Receiving from two tasks at once raises
    :class:`trio.BusyResourceError`.
    """

    __slots__ = (
        "_close_code",
        "_close_reason",
        "_conn",
        "_handshake",
        "_inbox",
        "_nursery",
        "_pings",
        "_refused",
        "_registry",
        "_writer",
        "application_state",
        "auth",
        "client",
        "extensions",
        "options",
        "refused_status",
        "request",
        "role",
        "stream",
        "subprotocol",
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
        handshake: ServerHandshake | None = None,
        nursery: trio.Nursery | None = None,
        registry: Registry[WebSocket] | None = None,
    ) -> None:
        self.stream = stream
        self.role = role
        self.options = options
        #: The opening request (server side), or the request this client sent.
        self.request = request
        #: The negotiated subprotocol, once accepted.
        self.subprotocol = subprotocol
        #: The peer's ``(host, port)``, when the stream is a socket.
        self.client = client
        #: The negotiated extensions, as in the ``Sec-WebSocket-Extensions`` response header.
        self.extensions: list[str] = []
        self.application_state = WebSocketState.CONNECTING
        #: The authenticated principal (server side, when an ``auth`` backend accepted the request).
        self.user: Any = None
        #: The authentication backend that accepted it.
        self.auth: Any = None
        #: The HTTP status of :meth:`reject`, if the handshake was refused.
        self.refused_status: int | None = None
        self._refused = False
        self._handshake = handshake  # a server's request waiting for accept()
        self._nursery = nursery  # where the connection's tasks run, once it is open
        self._registry = registry
        self._conn: Connection | None = None
        self._writer: Writer | None = None
        self._inbox: Inbox | None = None
        self._pings: PingTable | None = None  # made with the first ping
        self._close_code: int | None = None
        self._close_reason = ""

    # ------------------------------------------------------------- properties

    @property
    def nursery(self) -> trio.Nursery:
        """The connection's nursery: tasks started here end with the connection."""
        if self._nursery is None or self._conn is None:
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

    @property
    def client_state(self) -> WebSocketState:
        """The peer's side: ``DISCONNECTED`` once its close frame came or the connection ended."""
        inbox = self._inbox
        if inbox is None:
            return WebSocketState.DISCONNECTED if self._refused else WebSocketState.CONNECTING
        if inbox.peer_closed or inbox.finished:
            return WebSocketState.DISCONNECTED
        return WebSocketState.CONNECTED

    @property
    def latency(self) -> float | None:
        """Round-trip time of the last ping answered, in seconds."""
        return None if self._pings is None else self._pings.latency

    @property
    def supported_subprotocols(self) -> tuple[str, ...]:
        """The subprotocols the server speaks here (before accept; a route may narrow them)."""
        return () if self._handshake is None else self._handshake.subprotocols

    @property
    def pending_messages(self) -> int:
        """Messages received and not yet taken by a receive (bounded by ``max_queue`` and
        ``queue_high_water``, see ``WebSocketOptions``)."""
        return 0 if self._inbox is None else self._inbox.pending_messages

    @property
    def buffered_amount(self) -> int:
        """Bytes sent but not yet written to the stream (the browser API's ``bufferedAmount``)."""
        return 0 if self._writer is None else self._writer.pending

    @property
    def stream_closed(self) -> bool:
        """Whether the connection has closed its stream (after a refusal, or once it is closed)."""
        return self._refused or (self._writer is not None and self._writer.closed)

    @property
    def is_closed(self) -> bool:
        """Whether the connection is closed or closing: sends would raise."""
        conn, writer = self._conn, self._writer
        return conn is None or writer is None or conn.state is not ConnectionState.OPEN or writer.broken

    def configure(
        self,
        *,
        path_params: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        subprotocols: Sequence[str] | None = None,
    ) -> None:
        """Before :meth:`accept` (server side): what a matched route sets — its converted
        ``path_params``, :class:`WebSocketOptions` fields to change for this connection, and the
        ``subprotocols`` the server speaks here. ``RuntimeError`` once accepted or refused."""
        if self._handshake is None or self.application_state is not WebSocketState.CONNECTING:
            raise RuntimeError("configure() is only possible before accept()")
        if path_params is not None and self.request is not None:
            self.request.path_params = path_params
        if options:
            self.options = attrs.evolve(self.options, **options)
        if subprotocols is not None:
            self._handshake.subprotocols = tuple(subprotocols)

    def _start(self, conn: Connection, nursery: trio.Nursery, trailing: bytes, writer: Writer) -> None:
        self._conn = conn
        self._nursery = nursery
        self._writer = writer
        self.application_state = WebSocketState.CONNECTED
        budget = None if self._handshake is None else self._handshake.budget
        inbox = self._inbox = Inbox(self.stream, conn, writer, self.options, self._closed, budget)
        inbox.start(nursery, trailing)
        if self.options.ping_interval is not None:
            nursery.start_soon(keepalive, self, self.options.ping_interval, self.options.ping_timeout)

    def _protocol(self) -> Connection | None:
        return self._conn

    def _ping_table(self) -> PingTable:
        pings = self._pings
        if pings is None:
            pings = self._pings = PingTable()
            if self._inbox is not None:
                self._inbox.pings = pings
        return pings

    def _closed(self, released: bool) -> None:
        """The inbox is done: the connection is closed (``released``: its stream too)."""
        if released:
            if self._registry is not None:
                self._registry.closed(self)
            return
        if self._close_code is None:
            self._close_code, self._close_reason = self._current_close()
        if self._pings is not None:
            self._pings.end()

    def _receiver(self) -> Inbox | None:
        return self._inbox

    def _disconnect(self) -> WebSocketDisconnect:
        code = self._close_code
        if code is None:
            code, reason = self._current_close()
        else:
            reason = self._close_reason
        return WebSocketDisconnect(code, reason)

    def _current_close(self) -> tuple[int, str]:
        conn, writer = self._conn, self._writer
        if conn is None or writer is None:
            return CloseCode.ABNORMAL_CLOSURE, ""
        return conn.close_status(transport_lost=writer.broken)

    async def accept(
        self,
        subprotocol: str | None = None,
        headers: Sequence[tuple[str, str]] | None = None,
    ) -> None:
        """Accept the opening handshake (server side), with ``subprotocol`` (one the client offered)
        and extra response ``headers`` (which the server's ``process_response`` hook sees next).
        Raises :class:`RuntimeError` if already accepted or refused, :class:`ValueError` for a
        subprotocol the client did not offer, :class:`WebSocketDisconnect` (1001) when the server
        is shutting down (the client got 503), and (1006) when ``process_response`` refused."""
        handshake, request, nursery = self._handshake, self.request, self._nursery
        if handshake is None or request is None or nursery is None:
            raise RuntimeError("accept() is only possible once, before the handshake is answered")
        if self.application_state is not WebSocketState.CONNECTING:
            raise RuntimeError("accept() is only possible once, before the handshake is answered")
        options = self.options
        self.subprotocol = handshake.choose(request, subprotocol)
        answer = await handshake.answer(self, request, options, self.subprotocol, headers or ())
        if self._registry is not None and not self._registry.accepting:
            if self.application_state is WebSocketState.CONNECTING:  # (else refused by the shutdown)
                await self.reject(503, "server shutting down")
            raise WebSocketDisconnect(CloseCode.GOING_AWAY, "server shutting down")
        if isinstance(answer, Refusal):  # by the server's process_response
            await self._refuse(answer.status, answer.data)
            raise WebSocketDisconnect(CloseCode.ABNORMAL_CLOSURE, "handshake refused by process_response")
        response, conn, self.extensions = answer
        budget = handshake.budget
        writer = Writer(self.stream, nursery, options.write_high_water, options.write_low_water, budget)
        await writer.write_first(response)
        if writer.broken:
            await writer.abort()
            self._refused = True
            self.application_state = WebSocketState.DISCONNECTED
            self._close_code = CloseCode.ABNORMAL_CLOSURE
            raise WebSocketDisconnect(CloseCode.ABNORMAL_CLOSURE, "connection lost")
        request.headers.compact()  # kept for the whole connection: the bytes only
        self._start(conn, nursery, handshake.trailing, writer)
        self._handshake = None
        if self._registry is not None:
            self._registry.opened(self)

    async def reject(
        self,
        status: int = 403,
        body: str | bytes | None = None,
        headers: Sequence[tuple[str, str]] = (),
        content_type: str = "text/plain; charset=utf-8",
    ) -> None:
        """Refuse the opening handshake with an HTTP ``status`` (4xx/5xx), ``body`` (of
        ``content_type``) and ``headers``."""
        if self.application_state is not WebSocketState.CONNECTING or self.role is Role.CLIENT:
            raise RuntimeError("reject() is only possible before the handshake is answered")
        if not 400 <= status <= 599:
            raise ValueError(f"reject() needs a 4xx or 5xx status, not {status}")
        await self._refuse(status, http_error(status, body, headers, content_type=content_type))

    async def _refuse(self, status: int, response: bytes) -> None:
        self.application_state = WebSocketState.DISCONNECTED
        self._refused = True
        self._close_code = CloseCode.ABNORMAL_CLOSURE
        self.refused_status = status
        try:
            await answer_and_linger(self.stream, response, self.options.close_timeout)
        finally:  # (cancelled too: the stream is closed)
            await trio.aclose_forcefully(self.stream)

    async def receive(self) -> str | bytes:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Raises :class:`WebSocketDisconnect` once the connection is closed and every earlier message
        was received.
        """
        inbox = self._inbox
        if inbox is None:
            raise RuntimeError("receive() before the connection was accepted")
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            message = inbox.take()
        except trio.EndOfChannel:
            await trio.lowlevel.cancel_shielded_checkpoint()  # a loop of failing receives yields
            raise self._disconnect() from None
        if message is None:
            message = await inbox.wait()  # (the scheduler has run)
            if message is None:
                raise self._disconnect()
        else:
            await yield_if_due()  # a message was waiting: a scheduler round trip only when due
        return message.data

    # ------------------------------------------------------------------ send

    def _parts(self) -> tuple[Connection, Writer]:
        conn, writer = self._conn, self._writer
        if conn is None or writer is None:
            raise RuntimeError("send before the connection was accepted")
        return conn, writer

    # ----------------------------------------------------------------- close

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the connection with ``code`` and ``reason`` and wait for the closing handshake,
        at most ``close_timeout`` seconds, shielded from cancellation; then the stream is closed.

        Before :meth:`accept` on a server, it refuses the handshake with HTTP 403. Closing an
        already closed connection does nothing. Messages that arrive meanwhile are discarded.
        Raises ``ValueError``, before anything is done, for a code that may not be sent (only
        1000-1003, 1007-1014 and 3000-4999 may), a reason over 123 bytes of UTF-8 or with CR or LF.
        """
        check_close(code, reason)
        conn, writer, inbox = self._conn, self._writer, self._inbox
        if conn is None or writer is None or inbox is None:
            if self.role is Role.SERVER and self.application_state is WebSocketState.CONNECTING:
                await self.reject(403)
            else:
                await trio.lowlevel.checkpoint()
            return
        if self.close_started():
            await trio.lowlevel.checkpoint()
            return
        with trio.CancelScope(shield=True, deadline=trio.current_time() + self.options.close_timeout):
            await writer.close_frame_after_message(conn, code, reason)
            await inbox.wait_finished()
        if not inbox.finished:
            await writer.abort()
        await trio.lowlevel.checkpoint()

    def discard_pending(self) -> None:
        """Drop the messages received and not taken (for a server, once the handler is done)."""
        if self._inbox is not None:
            self._inbox.discard()

    def close_started(self) -> bool:
        """Note that this side is done with the connection (what ``close()`` does first: messages
        that arrive from now on are dropped) and return whether the connection is closed already,
        the closing handshake over. For servers, after a handler returned."""
        self.application_state = WebSocketState.DISCONNECTED
        if self._inbox is None:
            return True
        self._inbox.stop()
        return self._inbox.finished


def start_client(
    stream: trio.abc.Stream,
    conn: Connection,
    nursery: trio.Nursery,
    options: WebSocketOptions,
    *,
    request: Request,
    subprotocol: str | None,
    extensions: list[str],
    trailing: bytes = b"",
) -> WebSocket:
    """The client's :class:`WebSocket` after a successful opening handshake, started in ``nursery``
    (its reader, and its writer and keepalive tasks when needed, run there)."""
    ws = WebSocket(stream, Role.CLIENT, options, request=request, subprotocol=subprotocol)
    ws.extensions = extensions
    writer = Writer(stream, nursery, options.write_high_water, options.write_low_water)
    ws._start(conn, nursery, trailing, writer)
    return ws
