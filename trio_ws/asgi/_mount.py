"""Mounting trio_ws handlers in an ASGI server: :func:`as_asgi`.

The application keeps one :class:`~trio_ws.WebSocketServer` without listeners; each ASGI
``websocket`` (or ``http``) call is served by it over an :class:`ASGIStream`
(``_mount_stream.py``), so the handshake policy, the limits, the registry of connections, shutdown
with 1001 and the observer are those of the native server, unchanged.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from types import TracebackType
from typing import Any, final

import trio

from ..app import AuthBackend, Guard, RateLimit, SecurityPolicy
from ..connection import WebSocket, WebSocketOptions, WebSocketState
from ..protocol import CloseCode
from ..server import Handler, ProcessRequest, ProcessResponse, ServerObserver, WebSocketServer
from ._asgi_types import Receive, Scope, Send
from ._mount_request import request_head, scope_client, scope_scheme
from ._mount_stream import ASGIStream

__all__ = ["ASGIWebSocketApp", "as_asgi"]


def _require_trio() -> None:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        raise RuntimeError(
            "trio_ws.asgi.as_asgi() runs on trio: serve it with a trio ASGI server "
            "(hypercorn --worker-class trio, trio_ws.asgi.serve_asgi), not on asyncio"
        ) from None


@final
class ASGIWebSocketApp:
    """A trio_ws handler (or :class:`~trio_ws.Router`) as an ASGI 3 application; made by
    :func:`as_asgi`.

    ``websocket`` scopes are served as the native server serves connections; ``http`` scopes get
    what the native server answers plain HTTP (the ``process_request`` hook's response, else 426);
    ``lifespan`` startup is acknowledged, and lifespan shutdown closes every connection with 1001
    (:meth:`aclose`). A framework that does not hand lifespan events to mounted applications
    (Starlette's ``Mount``) can use the application as an async context manager in its own lifespan
    instead: ``async with ws_app: yield``.

    ``server`` is the :class:`~trio_ws.WebSocketServer` behind it (``server.connections``). After
    :meth:`aclose`, new connections are refused with 503 until the application is started again
    (lifespan startup, or entering it as a context manager).

    Error handling: a handler's exception is logged and closes its connection with 1011 (500
    before accept); nothing reaches the ASGI server. Cancelling an ASGI call (the ASGI server
    shutting down) ends its connection as a shutdown would: 1001 once accepted, 503 before, with
    ``close_timeout`` for the handler to return; then the cancellation goes on.
    """

    def __init__(self, handler: Handler, make_server: functools.partial[WebSocketServer]) -> None:
        #: The handler (or router) served.
        self.handler = handler
        self._make_server = make_server
        #: The server behind the application: ``connections``, ``observer``, ``aclose()``.
        self.server = make_server(self._handle)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI call: ``websocket``, ``http`` or ``lifespan``. ``ValueError`` for another
        scope type; ``RuntimeError`` outside trio."""
        _require_trio()
        kind = scope.get("type")
        if kind in ("websocket", "http"):
            await self._serve(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:
            raise ValueError(f"as_asgi() serves websocket, http and lifespan scopes, not {kind!r}")

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream = ASGIStream(scope, receive, send, request_head(scope))
        server = self.server
        done = False

        async def watch() -> None:  # what notices that the ASGI call is cancelled
            try:
                await trio.sleep(math.inf)
            finally:
                if not done:
                    stream.going_away()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            try:
                await server.serve_stream(
                    stream,
                    client=scope_client(scope),
                    scheme=scope_scheme(scope),
                    root_path=str(scope.get("root_path") or ""),
                )
            finally:
                done = True
                nursery.cancel_scope.cancel()

    async def _handle(self, ws: WebSocket) -> None:
        """The handler the server runs: the user's, in the scope :meth:`ASGIStream.going_away`
        cancels before accept."""
        stream = ws.stream
        if not isinstance(stream, ASGIStream):  # pragma: no cover - the server serves only these
            await self.handler(ws)
            return
        stream.ws = ws
        if not stream.leaving:
            with stream.handler_scope:
                await self.handler(ws)
        if stream.leaving and ws.application_state is WebSocketState.CONNECTING:
            await ws.reject(503, "server shutting down")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            kind = message.get("type")
            if kind == "lifespan.startup":
                self._reopen()
                await send({"type": "lifespan.startup.complete"})
            elif kind == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _reopen(self) -> None:
        if not self.server.accepting:
            self.server = self._make_server(self._handle)

    async def aclose(self, code: int = CloseCode.GOING_AWAY, reason: str = "") -> None:
        """Close every connection with ``code`` (1001) and ``reason`` and wait for them, as
        :meth:`WebSocketServer.aclose` does (bounded by ``close_timeout``; shielded). New
        connections are refused with 503 from now on."""
        await self.server.aclose(code, reason)

    async def __aenter__(self) -> ASGIWebSocketApp:
        """Start serving (again, after :meth:`aclose`)."""
        self._reopen()
        await trio.lowlevel.checkpoint()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """:meth:`aclose`."""
        await self.aclose()

    def __repr__(self) -> str:
        return f"<ASGIWebSocketApp {self.handler!r}, {len(self.server.connections)} connections>"


def as_asgi(
    handler: Handler,
    *,
    subprotocols: Sequence[str] = (),
    server_header: str | None = None,
    max_request_size: int = 16 * 1024,
    process_request: ProcessRequest | None = None,
    process_response: ProcessResponse | None = None,
    origins: Sequence[str] | None = None,
    require_origin: bool = False,
    rate_limit: RateLimit | None = None,
    auth: Sequence[AuthBackend] = (),
    guards: Sequence[Guard] = (),
    max_connections: int | None = None,
    max_connections_per_client: int | None = None,
    trusted_proxies: Sequence[str] = (),
    proxy_headers: str = "x-forwarded",
    max_buffered_bytes: int | None = None,
    observer: ServerObserver | None = None,
    access_log_query: bool = False,
    **options: Any,
) -> ASGIWebSocketApp:
    """``handler`` (``async def handler(ws, **path_params)``, or a :class:`~trio_ws.Router`) as an
    ASGI 3 application, for a trio ASGI server: ``Mount("/ws", app=as_asgi(router))`` in Starlette,
    served by ``hypercorn --worker-class trio`` or :func:`trio_ws.asgi.serve_asgi`.

    The handler gets the same :class:`~trio_ws.WebSocket` as on :func:`~trio_ws.serve_websocket`:
    ``ws.request`` (its ``client`` and ``scheme`` from the scope; ``root_path`` the mount point,
    which a router's paths follow: ``/chat/{room}`` mounted at ``/ws`` matches ``/ws/chat/1``),
    ``accept``/``reject``, the ``receive_*``, ``iter_*`` and ``send_*`` calls, ``close``, the states
    and ``ws.nursery``. The settings are those of :func:`~trio_ws.open_websocket_server` — the
    security checks (``origins``, ``rate_limit``, ``auth``, ``guards``), the HTTP hooks, the
    connection caps, ``trusted_proxies``, the buffer budget, the observer — with what the ASGI
    server owns left out: listeners and TLS, compression (the ASGI server negotiates
    permessage-deflate) and keepalive pings (``ping_interval``: the ASGI server's own setting).
    ``server_header`` is ``None`` by default: the ASGI server writes its own ``Server`` header.

    A refusal (``reject()``, a failed security check, an unmatched route) reaches the client as its
    HTTP status and body when the ASGI server supports the ``websocket.http.response`` extension;
    otherwise as a close before accept (the ASGI server answers 403).

    Keyword ``options`` are :class:`~trio_ws.WebSocketOptions` fields. Raises ``ValueError`` for
    ``compression`` or ``ping_interval`` (not ``None``) and for the settings
    :func:`~trio_ws.open_websocket_server` refuses.
    """
    if options.get("compression") is not None:
        raise ValueError("compression is the ASGI server's: it negotiates permessage-deflate with the client")
    if options.get("ping_interval") is not None:
        raise ValueError("keepalive pings are the ASGI server's (hypercorn: --websocket-ping-interval)")
    opts = WebSocketOptions(**{**options, "compression": None, "ping_interval": None})
    make_server = functools.partial(
        WebSocketServer,
        options=opts,
        subprotocols=subprotocols,
        server_header=server_header,
        max_request_size=max_request_size,
        process_request=process_request,
        process_response=process_response,
        policy=SecurityPolicy.build(origins, require_origin, rate_limit, auth, guards),
        max_connections=max_connections,
        max_connections_per_client=max_connections_per_client,
        trusted_proxies=trusted_proxies,
        proxy_headers=proxy_headers,
        max_buffered_bytes=max_buffered_bytes,
        observer=observer,
        access_log_query=access_log_query,
    )
    return ASGIWebSocketApp(handler, make_server)
