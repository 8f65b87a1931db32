"""The server: listeners, the opening handshake, one nursery per connection, graceful shutdown."""

from __future__ import annotations

import collections
import errno
import functools
import logging
import math
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, final

import trio

from ._auth import AuthBackend, Guard
from ._connection import WebSocket, WebSocketOptions, WebSocketState, answer_and_linger
from ._exceptions import WebSocketClose, WebSocketDisconnect
from ._io import receive_some
from ._request import HTTPResponse, Request
from ._security import RateLimit, SecurityPolicy, client_address, parse_networks
from .protocol import (
    CloseCode,
    Connection,
    HandshakeError,
    RequestParser,
    Role,
    build_response,
    error_response,
    negotiate_deflate,
    parse_extensions,
    validate_request,
)

if sys.version_info < (3, 11):  # pragma: no cover - trio depends on the backport there
    from exceptiongroup import BaseExceptionGroup

__all__ = ["Handler", "ProcessRequest", "WebSocketServer", "open_websocket_server", "serve_websocket"]

logger = logging.getLogger("trio_ws")
access_logger = logging.getLogger("trio_ws.access")

Handler = Callable[..., Awaitable[None]]
"""``async def handler(ws: WebSocket, **path_params) -> None``; a ``Router`` is one too."""
ProcessRequest = Callable[[Request], Awaitable[HTTPResponse | None]]
"""``async def process_request(request: Request) -> HTTPResponse | None``: the server's HTTP hook."""

_ACCEPT_RETRY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_ACCEPT_RETRY_DELAY = 0.1


def peer_address(stream: trio.abc.Stream) -> tuple[str, int] | None:
    """The ``(host, port)`` of the peer of a socket stream (or TLS over one); ``None`` otherwise."""
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        try:
            address = stream.socket.getpeername()
        except OSError:
            return None
        return (str(address[0]), int(address[1]))
    return None


class _Access:
    """What the access log says of one connection, filled in as it goes."""

    __slots__ = ("client", "host", "request", "start", "status", "ws")

    def __init__(self, start: float, client: tuple[str, int] | None) -> None:
        self.start = start
        self.client = client
        self.request: Request | None = None
        self.status = "-"  # the HTTP status answered, "-" when dropped without an answer
        self.ws: WebSocket | None = None
        self.host = "-"  # the key of max_connections_per_client, once admitted

    def log(self) -> None:
        """One line on ``trio_ws.access`` (INFO): client, path, outcome, duration, traffic."""
        if not access_logger.isEnabledFor(logging.INFO):
            return
        request, ws = self.request, self.ws
        client = request.client if request is not None else self.client
        where = f"{client[0]}:{client[1]}" if client else "-"
        path = request.target if request is not None else "-"
        if ws is not None and ws.refused_status is not None:
            outcome = str(ws.refused_status)
        elif ws is not None and ws.close_code is not None:
            outcome = f"101 close={ws.close_code}"
        elif ws is not None:
            outcome = "101"
        else:
            outcome = self.status
        traffic = ""
        if ws is not None and ws.refused_status is None:
            traffic = (
                f" in={ws.messages_received}/{ws.bytes_received}B out={ws.messages_sent}/{ws.bytes_sent}B"
            )
        duration = trio.current_time() - self.start
        access_logger.info("%s %s %s %.3fs%s", where, path, outcome, duration, traffic)


def _http(response: HTTPResponse, request: Request) -> bytes:
    """``response`` on the wire; for a HEAD request, the head a GET would get, without the body."""
    body = response.body
    data = error_response(response.status, body, response.headers, content_type=response.content_type)
    return data[: -len(body)] if request.method == "HEAD" and body else data


def _only_disconnects(exc: BaseException) -> bool:
    """Whether ``exc`` is a ``WebSocketDisconnect``, or a group made only of them (nested or not)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_disconnects(e) for e in exc.exceptions)
    return isinstance(exc, WebSocketDisconnect)


@final
class WebSocketServer:
    """A running server (from :func:`open_websocket_server` or :func:`serve_websocket`).

    ``connections`` holds the open connections; :meth:`aclose` shuts down gracefully.
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
        security: SecurityPolicy | None = None,
        max_connections: int | None = None,
        max_connections_per_client: int | None = None,
        trusted_proxies: Sequence[str] = (),
    ) -> None:
        self.handler = handler
        self.process_request = process_request
        self.security = security
        self.max_connections = max_connections
        self.max_connections_per_client = max_connections_per_client
        self.trusted_proxies = parse_networks(trusted_proxies)
        self._per_client: collections.Counter[str] = collections.Counter()
        self._records: dict[trio.abc.Stream, _Access] = {}
        self.options = options
        self.listeners = list(listeners)
        self.subprotocols = list(subprotocols)
        self.server_header = server_header
        self.max_request_size = max_request_size
        #: The open (accepted) connections.
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
            if isinstance(listener, trio.SocketListener):
                self._port = int(listener.socket.getsockname()[1])
                break

    @property
    def port(self) -> int:
        """The port of the first TCP listener."""
        if self._port is None:
            raise RuntimeError("the server has no TCP listener")
        return self._port

    # -------------------------------------------------------------- listeners

    async def _run_listeners(self, nursery: trio.Nursery) -> None:
        try:
            with self._listener_scope:
                async with trio.open_nursery() as listen:
                    for listener in self.listeners:
                        listen.start_soon(self._accept_loop, listener, nursery)
        finally:  # also when an outer cancellation goes through _listener_scope
            for listener in self.listeners:
                await trio.aclose_forcefully(listener)

    async def _accept_loop(self, listener: trio.abc.Listener[Any], nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_RETRY_ERRNOS:
                    raise
                logger.error("accept failed (%s); retrying in %ss", exc, _ACCEPT_RETRY_DELAY)
                await trio.sleep(_ACCEPT_RETRY_DELAY)
                continue
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return
            nursery.start_soon(self.serve_stream, stream)

    # ------------------------------------------------------------ connections

    async def serve_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one connection over ``stream`` (already accepted), until it is closed.

        Never raises but for cancellation: the handler's errors are logged and close the connection
        with 1011. The connection is shielded from outside cancellation; :meth:`aclose` ends it.
        """
        full = self.max_connections is not None and len(self._scopes) >= self.max_connections
        record = self._records[stream] = _Access(trio.current_time(), peer_address(stream))
        if self._idle.is_set():
            self._idle = trio.Event()
        scope: trio.CancelScope | None = None
        try:
            # The connection's nursery; its scope is the shield, and what aclose() cancels.
            async with trio.open_nursery() as nursery:
                scope = nursery.cancel_scope
                scope.shield = True
                self._scopes[scope] = scope
                if full:
                    await self._answer(
                        stream, error_response(503, "too many connections\n", [("Retry-After", "1")])
                    )
                else:
                    ws = await self._serve(stream, scope, nursery)
                    if ws is not None:
                        try:
                            await self._run_handler(ws)
                        finally:
                            self._release(ws, record, nursery)
        except Exception:  # (the handler's own errors are dealt with in _run_handler)
            logger.exception("connection failed")
        finally:
            if scope is not None:
                self._scopes.pop(scope, None)
            del self._records[stream]
            if not self._scopes:
                self._idle.set()
            if record.ws is None or not record.ws._stream_closed:
                await trio.aclose_forcefully(stream)
            record.log()

    async def _answer(self, stream: trio.abc.Stream, data: bytes) -> None:
        record = self._records.get(stream)
        if record is not None:
            record.status = data[9:12].decode("latin-1")
        await answer_and_linger(stream, data, self.options.close_timeout)

    async def _serve(
        self, stream: trio.abc.Stream, scope: trio.CancelScope, nursery: trio.Nursery
    ) -> WebSocket | None:
        """The opening handshake up to the handler: the WebSocket to hand it, or ``None`` when the
        request was answered otherwise. (The handler does not run in here: an idle connection's
        task holds as few coroutine frames as it can.)"""
        if self._closing:
            await self._answer(stream, error_response(503, "server shutting down"))
            return None
        parser = RequestParser(max_size=self.max_request_size)
        request = None
        # open_timeout ends it, or a shutdown (then this task answers 503 itself).
        reading = trio.CancelScope(deadline=trio.current_time() + self.options.open_timeout)
        self._scopes[scope] = reading
        try:
            with reading:
                if isinstance(stream, trio.SSLStream):
                    await stream.do_handshake()
                while request is None:
                    request = parser.receive_data(await receive_some(stream, 65536))
            if request is None and self._closing:
                await self._answer(stream, error_response(503, "server shutting down\n"))
                return None
            if request is None:
                logger.debug("opening handshake timed out")
                return None
            trailing = parser.trailing
            del parser  # (this frame lives as long as the connection)
            scheme = "wss" if isinstance(stream, trio.SSLStream) else "ws"
            record = self._records[stream]
            req = Request(request, scheme=scheme, client=record.client)
            record.request = req
            if self.process_request is not None and await self._process_request(stream, req):
                return None
            key = validate_request(request)
        except HandshakeError as exc:
            await self._answer(stream, error_response(exc.status, exc.reason + "\n", exc.headers))
            return None
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError):
            return None
        req.client = client_address(req.client, req.headers, self.trusted_proxies)
        host = req.client[0] if req.client else "-"
        if (
            self.max_connections_per_client is not None
            and self._per_client[host] >= self.max_connections_per_client
        ):
            await self._answer(
                stream,
                error_response(429, "too many connections from this address\n", [("Retry-After", "1")]),
            )
            return None
        self._per_client[host] += 1
        record.host = host
        ws = None
        try:
            ws = await self._admit(stream, scope, nursery, trailing, req, key)
        finally:
            if ws is None:
                self._release_host(host)
        return ws

    def _release_host(self, host: str) -> None:
        self._per_client[host] -= 1
        if not self._per_client[host]:
            del self._per_client[host]

    def _release(self, ws: WebSocket, record: _Access, nursery: trio.Nursery) -> None:
        """The handler is done: so is the connection."""
        self.connections.discard(ws)
        self._release_host(record.host)
        if nursery.child_tasks:  # (cancel() is not free: it formats the task's repr)
            nursery.cancel_scope.cancel()

    async def _admit(
        self,
        stream: trio.abc.Stream,
        scope: trio.CancelScope,
        nursery: trio.Nursery,
        trailing: bytes,
        req: Request,
        key: str,
    ) -> WebSocket | None:
        """The server-wide checks; the WebSocket for the handler if they pass."""
        principal = backend = None
        if self.security is not None:
            try:
                refusal, principal, backend = await self.security.check(req)
            except Exception:  # an authentication backend or a guard failed: ours to log, not theirs
                logger.exception("security checks failed for %s", req.target)
                refusal = HTTPResponse(500, "internal server error\n")
            if refusal is not None:
                await self._answer(stream, _http(refusal, req))
                return None
        ws = WebSocket(stream, Role.SERVER, self.options, request=req, client=req.client)
        ws.supported_subprotocols = tuple(self.subprotocols)
        ws.user, ws.auth = principal, backend
        self._records[stream].ws = ws
        self._scopes[scope] = ws
        ws._accept_hook = functools.partial(self._accept, req, key, nursery, trailing)
        return ws

    async def _accept(
        self,
        request: Request,
        key: str,
        nursery: trio.Nursery,
        trailing: bytes,
        ws: WebSocket,
        subprotocol: str | None,
        headers: list[tuple[str, str]],
    ) -> None:
        offered = request.subprotocols
        if subprotocol is None:
            subprotocol = next((p for p in offered if p in ws.supported_subprotocols), None)
        elif subprotocol not in offered:
            raise ValueError(
                f"accept(subprotocol={subprotocol!r}): the client did not offer it; it offered {offered}"
            )
        if self.server_header is not None:
            headers = [*headers, ("Server", self.server_header)]
        if self._closing:
            await ws.reject(503, "server shutting down")
            raise WebSocketDisconnect(CloseCode.GOING_AWAY, "server shutting down")
        options = ws.options
        deflate = None
        if options.compression is not None:
            deflate = negotiate_deflate(parse_extensions(request.headers), options.compression)
        extensions = None if deflate is None else deflate.response_params()
        response = build_response(key, subprotocol=subprotocol, extensions=extensions, headers=headers)
        ws.subprotocol = subprotocol
        ws.extensions = [] if extensions is None else [extensions]
        await ws._send_raw(response)
        ws._accept_hook = None
        request.headers.compact()  # kept for the whole connection: the bytes only
        ws._start(
            Connection(Role.SERVER, max_message_size=options.max_message_size, extension=deflate),
            nursery,
            trailing,
        )
        self.connections.add(ws)

    async def _process_request(self, stream: trio.abc.Stream, request: Request) -> bool:
        """Run the HTTP hook; answer and return ``True`` if it answered."""
        assert self.process_request is not None
        try:
            response = await self.process_request(request)
        except Exception:
            logger.exception("process_request failed for %s", request.target)
            response = HTTPResponse(500, "internal server error\n")
        if response is None:
            return False
        await self._answer(stream, _http(response, request))
        return True

    async def _run_handler(self, ws: WebSocket) -> None:
        try:
            await self.handler(ws)
        except WebSocketClose as exc:
            await ws.close(exc.code, exc.reason)
        except WebSocketDisconnect:
            pass
        except Exception as exc:
            if _only_disconnects(exc):  # from the handler's own nursery: the peer went away
                return await self._finish(ws)
            logger.exception("handler for %s failed", ws.path)
            if ws.application_state is WebSocketState.CONNECTING:
                await ws.reject(500, "internal server error")
            else:
                await ws.close(CloseCode.INTERNAL_ERROR)
        await self._finish(ws)

    @staticmethod
    async def _finish(ws: WebSocket) -> None:
        if ws.application_state is WebSocketState.CONNECTING:
            await ws.reject(403)  # the handler returned without accepting (the ASGI convention)
        elif not ws._closed_already():  # (then the closing handshake is over: nothing to wait for)
            await ws.close()

    # --------------------------------------------------------------- shutdown

    async def aclose(self, code: int = CloseCode.GOING_AWAY, reason: str = "") -> None:
        """Shut down gracefully: stop accepting, answer handshakes in progress with 503, close every
        connection with ``code`` (1001), wait up to ``close_timeout`` for the closing handshakes and
        the handlers, then cancel what is left. Shielded from cancellation; calling it again waits
        for the first call to finish."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        with trio.CancelScope(shield=True):
            self._listener_scope.cancel()
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


@asynccontextmanager
async def open_websocket_server(
    handler: Handler,
    host: str | bytes | None = None,
    port: int = 0,
    *,
    ssl_context: ssl.SSLContext | None = None,
    listeners: Sequence[trio.abc.Listener[Any]] | None = None,
    subprotocols: Sequence[str] = (),
    server_header: str | None = "trio_ws",
    max_request_size: int = 16 * 1024,
    process_request: ProcessRequest | None = None,
    origins: Sequence[str] | None = None,
    require_origin: bool = False,
    rate_limit: RateLimit | None = None,
    auth: Sequence[AuthBackend] = (),
    guards: Sequence[Guard] = (),
    max_connections: int | None = None,
    max_connections_per_client: int | None = None,
    trusted_proxies: Sequence[str] = (),
    **options: Any,
) -> AsyncIterator[WebSocketServer]:
    """Serve ``handler`` on ``host:port`` (or on ready-made ``listeners``) for the block's duration.

    ``subprotocols``: those the server speaks, in case the handler (or its route) does not choose;
    the first the client offered wins. ``server_header``: the ``Server`` response header (``None``:
    none). ``max_request_size``: the request head's limit (431 beyond). ``process_request``: an
    async hook that sees every request first and may answer it with an :class:`HTTPResponse` (health
    checks, pages, redirects); ``None`` from it continues with the WebSocket handshake. Plain HTTP
    requests it does not answer get 426 with ``Upgrade: websocket``.

    Security (``docs/security.md``), checked before the handler in this order: ``origins`` (allowed
    ``Origin`` values: exact, ``"*"``, ``"https://*.example.com"``; refused with 403 "Origin not
    allowed"; ``require_origin`` refuses requests without one), ``rate_limit`` (a :class:`RateLimit`
    per client address: 429 with ``Retry-After``), ``auth`` (backends; the first to return a
    principal wins: ``ws.user``), ``guards`` (401 without credentials, 403 otherwise).
    ``max_connections`` (503 beyond) and ``max_connections_per_client`` (429 beyond) cap
    connections; ``trusted_proxies`` (addresses or CIDR networks) are the proxies whose
    ``Forwarded`` / ``X-Forwarded-For`` headers say who the client is.

    Keyword ``options`` are :class:`WebSocketOptions` fields. Leaving the block — normally, by an
    exception or by cancellation — shuts down gracefully (see :meth:`WebSocketServer.aclose`).

    Error handling: an exception raised in the block propagates unchanged. Errors of the server's own
    tasks (a listener failing with an unexpected ``OSError``) arrive as an ``ExceptionGroup``.
    """
    opts = WebSocketOptions(**options)
    if listeners is None:
        tcp = await trio.open_tcp_listeners(port, host=host)
        listeners = (
            [trio.SSLListener(lst, ssl_context, https_compatible=False) for lst in tcp]
            if ssl_context is not None
            else tcp
        )
    server = WebSocketServer(
        handler,
        opts,
        listeners=listeners,
        subprotocols=subprotocols,
        server_header=server_header,
        max_request_size=max_request_size,
        process_request=process_request,
        security=SecurityPolicy.build(origins, require_origin, rate_limit, auth, guards),
        max_connections=max_connections,
        max_connections_per_client=max_connections_per_client,
        trusted_proxies=trusted_proxies,
    )
    error: Exception | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server._run_listeners, nursery)
        try:
            yield server
        except Exception as exc:
            error = exc
        finally:
            await server.aclose()
    if error is not None:
        raise error


async def serve_websocket(
    handler: Handler,
    host: str | bytes | None,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
    **options: Any,
) -> None:
    """Serve ``handler`` until cancelled; cancellation is a graceful shutdown (close 1001 to every
    connection, bounded by ``close_timeout``). Calls ``task_status.started(server)`` once listening.

    Options are those of :func:`open_websocket_server`.
    """
    async with open_websocket_server(handler, host, port, ssl_context=ssl_context, **options) as server:
        task_status.started(server)
        await trio.sleep(math.inf)
