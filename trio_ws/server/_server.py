"""The server: listeners, one nursery per connection, the registry of connections, graceful
shutdown (the 1001 of every connection), and the rule that a connection owns its tasks."""

from __future__ import annotations

import logging
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, final

import trio

from ..connection import (
    BufferBudget,
    WebSocket,
    WebSocketClose,
    WebSocketDisconnect,
    WebSocketOptions,
    WebSocketState,
    check_close,
)
from ..protocol import CloseCode
from ._accept import accept_forever
from ._access import AccessRecord, peer_address
from ._handoff import HTTPHandler
from ._observer import ServerObserver
from ._proxies import PROXY_HEADERS, parse_networks
from ._upgrade import Handler, HandshakePolicy, ProcessRequest, ProcessResponse, Upgrader

if sys.version_info < (3, 11):  # pragma: no cover - trio depends on the backport there
    from exceptiongroup import BaseExceptionGroup

__all__ = ["WebSocketServer", "default_buffered_bytes", "open_listeners", "run_server"]

logger = logging.getLogger("trio_ws")



def default_buffered_bytes(options: WebSocketOptions) -> int:
    """The default of ``max_buffered_bytes``: 256 MiB, or 16 messages of ``max_message_size`` if
    that is more."""
    return max(256 * 2**20, 16 * (options.max_message_size or 0))


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions in ``exc``: itself, or those of a group (nested groups too), in order."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


def handler_ending(exc: BaseException) -> WebSocketClose | WebSocketDisconnect | None:
    """What a handler's exception asks for. ``exc`` is a ``WebSocketClose`` or a
    ``WebSocketDisconnect``, or a group (from the handler's own nursery; nested or not) made only of
    them: the first ``WebSocketClose`` in the group's order (close with its code and reason), else a
    ``WebSocketDisconnect`` (the peer went away). ``None`` for anything else, a group with any other
    exception included: the handler failed."""
    leaves = _leaves(exc)
    if not all(isinstance(e, (WebSocketClose, WebSocketDisconnect)) for e in leaves):
        return None
    first = next((e for e in leaves if isinstance(e, WebSocketClose)), leaves[0])
    assert isinstance(first, (WebSocketClose, WebSocketDisconnect))
    return first


@final
class WebSocketServer:
    """A running server (from :func:`~trio_ws.open_websocket_server` or
    :func:`~trio_ws.serve_websocket`): ``connections`` holds the open connections; :meth:`aclose`
    shuts down gracefully.

    A connection owns its tasks: once it is closed (closing handshake done, or the stream lost), a
    handler still running ``close_timeout`` later is cancelled, with the tasks it started in
    ``ws.nursery``, and that is logged at INFO.

    ``observer`` (a :class:`~trio_ws.ServerObserver`, such as :class:`~trio_ws.Metrics`) is told of
    handshakes, connections and handler failures, once per connection. The access log
    (``trio_ws.access``) leaves out query strings unless ``access_log_query`` is true.
    ``http_handler`` serves connections whose first request is plain HTTP (else: 426).
    """

    def __init__(
        self,
        handler: Handler,
        options: WebSocketOptions,
        *,
        listeners: Sequence[trio.abc.Listener[Any]] = (),
        subprotocols: Sequence[str] = (),
        server_header: str | None = "trio_ws",
        max_request_size: int = 16 * 1024,
        process_request: ProcessRequest | None = None,
        process_response: ProcessResponse | None = None,
        policy: HandshakePolicy | None = None,
        max_connections: int | None = None,
        max_connections_per_client: int | None = None,
        trusted_proxies: Sequence[str] = (),
        proxy_headers: str = "x-forwarded",
        max_buffered_bytes: int | None = None,
        observer: ServerObserver | None = None,
        access_log_query: bool = False,
        http_handler: HTTPHandler | None = None,
    ) -> None:
        if proxy_headers not in PROXY_HEADERS:
            raise ValueError(f"proxy_headers is one of {PROXY_HEADERS}, not {proxy_headers!r}")
        self.handler = handler
        #: Told of handshakes, connections and handler failures (``None``: nobody).
        self.observer = observer
        #: Whether the access log keeps query strings (they may carry tokens).
        self.access_log_query = access_log_query
        if max_buffered_bytes is None:
            max_buffered_bytes = default_buffered_bytes(options)
        #: The bytes all connections hold, against ``max_buffered_bytes`` (``.used``, ``.peak``).
        self.budget = BufferBudget(max_buffered_bytes)
        self.options = options
        self.max_connections = max_connections
        self.listeners = list(listeners)
        self._upgrader = Upgrader(
            options,
            self,
            subprotocols=tuple(subprotocols),
            server_header=server_header,
            max_request_size=max_request_size,
            process_request=process_request,
            process_response=process_response,
            policy=policy,
            max_connections_per_client=max_connections_per_client,
            trusted_proxies=parse_networks(trusted_proxies),
            budget=self.budget,
            proxy_headers=proxy_headers,
            http=http_handler,
            access_log_query=access_log_query,
        )
        self._records: dict[trio.abc.Stream, AccessRecord] = {}
        #: The open (accepted, not yet closed) connections.
        self.connections: set[WebSocket] = set()
        # Each connection's cancel scope -> its WebSocket, or the scope reading its request until then.
        self._scopes: dict[trio.CancelScope, WebSocket | trio.CancelScope] = {}
        self._listener_scope = trio.CancelScope()
        self._idle = trio.Event()
        self._idle.set()
        self._closing = False
        self._closed = trio.Event()
        self._port: int | None = None
        for listener in self.listeners:  # read now: it stays readable after the server closed
            while isinstance(listener, trio.SSLListener):
                listener = listener.transport_listener
            if isinstance(listener, trio.SocketListener) and listener.socket.family != socket.AF_UNIX:
                self._port = int(listener.socket.getsockname()[1])
                break

    @property
    def port(self) -> int:
        """The port of the first TCP listener."""
        if self._port is None:
            raise RuntimeError("the server has no TCP listener")
        return self._port

    # ---------------------------------------------- the connections' registry

    @property
    def accepting(self) -> bool:
        """``False`` once shutdown began: handshakes still answered get 503."""
        return not self._closing

    def opened(self, ws: WebSocket) -> None:
        """``ws`` was accepted (called by the connection)."""
        self.connections.add(ws)
        observer = self.observer
        if observer is not None and (record := self._records.get(ws.stream)) is not None:
            record.status = "101"  # (what tells AccessRecord.finish to report connection_closed)
            observer.handshake_answered(101)
            observer.connection_opened()

    def closed(self, ws: WebSocket) -> None:
        """``ws`` is closed (called by the connection): it leaves ``connections``, and its handler
        has ``close_timeout`` left to return."""
        self.connections.discard(ws)
        record = self._records.get(ws.stream)
        if record is not None and not record.handler_done:
            scope = ws.nursery.cancel_scope
            scope.deadline = min(scope.deadline, trio.current_time() + ws.options.close_timeout)

    # -------------------------------------------------------------- listeners

    async def run_listeners(self, nursery: trio.Nursery) -> None:
        """Accept connections on every listener and serve each in ``nursery``, until shutdown."""
        try:
            with self._listener_scope:
                async with trio.open_nursery() as listen:
                    for listener in self.listeners:
                        listen.start_soon(self._accept_loop, listener, nursery)
        finally:  # also when an outer cancellation goes through _listener_scope
            for listener in self.listeners:
                await trio.aclose_forcefully(listener)

    async def _accept_loop(self, listener: trio.abc.Listener[Any], nursery: trio.Nursery) -> None:
        await accept_forever(listener, lambda stream: nursery.start_soon(self.serve_stream, stream))

    # ------------------------------------------------------------ connections

    async def serve_stream(
        self,
        stream: trio.abc.Stream,
        *,
        client: tuple[str, int] | None = None,
        scheme: str | None = None,
        root_path: str = "",
    ) -> None:
        """Serve one connection over ``stream`` (already accepted), until it is closed.

        For a stream that is not a socket (an ASGI connection, say): ``client`` is the peer's
        ``(host, port)`` (default: the socket's peer), ``scheme`` ``"ws"`` or ``"wss"`` (default:
        ``"wss"`` over TLS) and ``root_path`` the handler's mount point (``Request.root_path``).

        Never raises but for cancellation: the handler's errors are logged and close the connection
        with 1011. The connection is shielded from outside cancellation; :meth:`aclose` ends it.
        """
        full = self.max_connections is not None and len(self._scopes) >= self.max_connections
        peer = client if client is not None else peer_address(stream)
        record = self._records[stream] = AccessRecord(trio.current_time(), peer)
        if self._idle.is_set():
            self._idle = trio.Event()
        scope: trio.CancelScope | None = None
        ws: WebSocket | None = None
        try:
            # The connection's nursery; its scope is the shield, and what aclose() cancels.
            async with trio.open_nursery() as nursery:
                scope = nursery.cancel_scope
                scope.shield = True
                self._scopes[scope] = scope
                if full:
                    busy = self._upgrader.refusal(503, "too many connections\n", [("Retry-After", "1")])
                    await self._upgrader.answer(stream, record, busy)
                else:
                    # open_timeout ends the reading, or a shutdown (the upgrader then answers 503).
                    reading = trio.CancelScope(deadline=trio.current_time() + self.options.open_timeout)
                    self._scopes[scope] = reading
                    ws = await self._upgrader.upgrade(
                        stream, record, reading, nursery, scheme=scheme, root_path=root_path
                    )
                    if ws is not None:
                        self._scopes[scope] = ws
                        try:
                            await self._run_handler(ws, record)
                        finally:
                            self._release(ws, record, nursery)
        except Exception:  # (the handler's own errors are dealt with in _run_handler)
            logger.exception("connection failed")
        finally:
            if scope is not None:
                self._scopes.pop(scope, None)
                if ws is not None and scope.cancelled_caught and trio.current_time() >= scope.deadline:
                    logger.info(
                        "handler for %s was still running %ss after its connection closed; cancelled",
                        ws.path,
                        ws.options.close_timeout,
                    )
            del self._records[stream]
            if not self._scopes:
                self._idle.set()
            if ws is None or not ws.stream_closed:
                await trio.aclose_forcefully(stream)
            record.finish(self.observer, self.access_log_query)

    def _release(self, ws: WebSocket, record: AccessRecord, nursery: trio.Nursery) -> None:
        """The handler is done: so is the connection."""
        self.connections.discard(ws)
        ws.discard_pending()  # nothing will take them now: out of the budget
        self._upgrader.release_host(record.host)
        if nursery.child_tasks:  # (cancel() is not free: it formats the task's repr)
            nursery.cancel_scope.cancel()

    async def _run_handler(self, ws: WebSocket, record: AccessRecord) -> None:
        try:
            await self.handler(ws)
        except WebSocketDisconnect:
            pass
        except Exception as exc:
            record.handler_done = True
            ending = handler_ending(exc)
            if isinstance(ending, WebSocketClose):
                return await self._close_as_asked(ws, ending)
            if ending is not None:  # disconnects from the handler's own nursery: the peer went away
                return await self._finish(ws)
            logger.exception("handler for %s failed", ws.path)
            record.failed = True
            if ws.application_state is WebSocketState.CONNECTING:
                await ws.reject(500, "internal server error")
            else:
                await ws.close(CloseCode.INTERNAL_ERROR)
        record.handler_done = True
        await self._finish(ws)

    @staticmethod
    async def _close_as_asked(ws: WebSocket, close: WebSocketClose) -> None:
        """Close as the handler's ``WebSocketClose`` asks; with 1011 if its code or reason cannot be
        sent (changed after it was made): never without a close frame."""
        code, reason = close.code, close.reason
        try:
            check_close(code, reason)
        except ValueError as exc:
            logger.error(
                "handler for %s raised WebSocketClose that cannot be sent (%s); closing with 1011",
                ws.path,
                exc,
            )
            code, reason = CloseCode.INTERNAL_ERROR, ""
        await ws.close(code, reason)

    @staticmethod
    async def _finish(ws: WebSocket) -> None:
        if ws.application_state is WebSocketState.CONNECTING:
            await ws.reject(403)  # the handler returned without accepting (the ASGI convention)
        elif not ws.close_started():  # (then the closing handshake is over: nothing to wait for)
            await ws.close()

    # --------------------------------------------------------------- shutdown

    async def aclose(self, code: int = CloseCode.GOING_AWAY, reason: str = "") -> None:
        """Shut down gracefully: stop accepting, answer handshakes in progress with 503, close every
        connection with ``code`` (1001; HTTP ones at once if idle, else after their response), wait up to
        ``close_timeout`` for the closing handshakes and the handlers, then cancel what is left. Returns as
        soon as every connection is closed and its handler has returned. Shielded from cancellation; calling
        it again waits for the first call to finish. ``ValueError`` for a ``code`` or ``reason`` a close frame
        may not carry (see :meth:`WebSocket.close`), before anything is done."""
        check_close(code, reason)
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        with trio.CancelScope(shield=True):
            self._listener_scope.cancel()
            self._upgrader.idle.wake()  # HTTP connections between requests: closed now
            with trio.move_on_after(self.options.close_timeout):
                async with trio.open_nursery() as nursery:
                    for scope, ws in list(self._scopes.items()):
                        nursery.start_soon(self._shutdown_one, scope, ws, code, reason)
                await self._idle.wait()
            for scope in list(self._scopes):
                scope.cancel()
            await self._idle.wait()
            self._closed.set()

    async def _shutdown_one(
        self, scope: trio.CancelScope, ws: WebSocket | trio.CancelScope, code: int, reason: str
    ) -> None:
        if not isinstance(ws, WebSocket):  # still reading the request: stop; it answers 503
            ws.cancel()
        elif ws.application_state is WebSocketState.CONNECTING:
            await ws.reject(503, "server shutting down")
            scope.cancel()
        else:
            await ws.close(code, reason)


async def open_listeners(
    host: str | bytes | None, port: int, ssl_context: ssl.SSLContext | None = None
) -> list[trio.abc.Listener[Any]]:
    """TCP listeners on ``host:port`` (every address it resolves to), with TLS if ``ssl_context``."""
    tcp = await trio.open_tcp_listeners(port, host=host)
    if ssl_context is None:
        return list(tcp)
    return [trio.SSLListener(lst, ssl_context, https_compatible=False) for lst in tcp]


@asynccontextmanager
async def run_server(server: WebSocketServer) -> AsyncIterator[WebSocketServer]:
    """Run ``server``'s listeners for the block's duration; leaving it — normally, by an exception
    or by cancellation — shuts down gracefully (:meth:`WebSocketServer.aclose`).

    Error handling: an exception raised in the block propagates unchanged. Errors of the server's own
    tasks (a listener failing with an unexpected ``OSError``) arrive as an ``ExceptionGroup``.
    """
    error: Exception | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.run_listeners, nursery)
        try:
            yield server
        except Exception as exc:
            error = exc
        finally:
            await server.aclose()
    if error is not None:
        raise error
