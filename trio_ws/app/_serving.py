"""Serving a handler: :func:`open_websocket_server` and :func:`serve_websocket`, the server of
``trio_ws.server`` with the handshake defences of this layer (origins, rate limits, auth, guards)."""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from ..connection import WebSocketOptions
from ..server import (
    Handler,
    HTTPHandler,
    ProcessRequest,
    ProcessResponse,
    ServerObserver,
    WebSocketServer,
    open_listeners,
    run_server,
)
from ._auth import AuthBackend, Guard
from ._security import RateLimit, SecurityPolicy

__all__ = ["open_websocket_server", "serve_websocket"]


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
    http_handler: HTTPHandler | None = None,
    **options: Any,
) -> AsyncIterator[WebSocketServer]:
    """Serve ``handler`` on ``host:port`` (or on ready-made ``listeners``) for the block's duration.

    ``subprotocols``: those the server speaks, in case the handler (or its route) does not choose;
    the first the client offered wins. ``server_header``: the ``Server`` response header (``None``:
    none). ``max_request_size``: the request head's limit (431 beyond). ``process_request``: an
    async hook that sees every request first and may answer it with an :class:`HTTPResponse` (health
    checks, pages, redirects); ``None`` from it continues with the WebSocket handshake. Plain HTTP
    requests it does not answer get 426 with ``Upgrade: websocket``. ``process_response``: an async
    hook called as ``process_response(ws, headers)`` when a handler accepts, before the 101 is
    written: it may change ``headers`` (a list of ``(name, value)`` pairs: those of
    ``accept(headers=...)`` and ``Server``) in place — set a cookie, drop a header — and return
    ``None``, or return an :class:`HTTPResponse` to refuse the handshake with it (``accept()`` then
    raises :class:`WebSocketDisconnect` 1006). An exception in either hook is logged and answered
    with 500.

    Security (``docs/security.md``), checked before the handler in this order: ``origins`` (allowed
    ``Origin`` values: exact, ``"*"``, ``"https://*.example.com"``; refused with 403 "Origin not
    allowed"; ``require_origin`` refuses requests without one), ``rate_limit`` (a :class:`RateLimit`
    per client address: 429 with ``Retry-After``), ``auth`` (backends; the first to return a
    principal wins: ``ws.user``), ``guards`` (401 without credentials, 403 otherwise).
    ``max_connections`` (503 beyond) and ``max_connections_per_client`` (429 beyond) cap
    connections; ``trusted_proxies`` (addresses or CIDR networks) are the proxies whose headers say
    who the client is, and the scheme and host it asked for: ``proxy_headers="x-forwarded"``
    (``X-Forwarded-For`` / ``-Proto`` / ``-Host``, what nginx and most load balancers write) or
    ``"forwarded"`` (RFC 7239 ``Forwarded``). Only that family is read: a client may write the other,
    and a proxy passes it on.

    ``max_buffered_bytes``: the bytes all connections together may hold in memory — messages not yet
    taken by their handlers, messages still arriving, bytes not yet written (default: 256 MiB, or 16
    messages of ``max_message_size`` if that is more). Once it is reached, readers pause (TCP
    pushes back on the peers), new handshakes get 503, and a connection that holds part of a message
    and has waited ``close_timeout`` is closed with 1013 (try again later).

    Observability (``docs/logging.md``): ``observer`` is told of every handshake, connection and
    handler failure (a :class:`Metrics`; any :class:`ServerObserver`). The access log line of each
    connection (``trio_ws.access``, INFO) leaves out the query string, which may carry a token,
    unless ``access_log_query`` is true.

    ``http_handler``: what serves connections whose first request is plain HTTP rather than 426
    (:func:`trio_ws.asgi.open_asgi_server` sets it: an ASGI application's HTTP side).

    Keyword ``options`` are :class:`WebSocketOptions` fields. Leaving the block — normally, by an
    exception or by cancellation — shuts down gracefully (see :meth:`WebSocketServer.aclose`).

    Error handling: an exception raised in the block propagates unchanged. Errors of the server's own
    tasks (a listener failing with an unexpected ``OSError``) arrive as an ``ExceptionGroup``.
    """
    opts = WebSocketOptions(**options)
    opened = listeners is None
    if listeners is None:
        listeners = await open_listeners(host, port, ssl_context)
    try:
        server = WebSocketServer(
            handler,
            opts,
            listeners=listeners,
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
            http_handler=http_handler,
        )
    except BaseException:  # a bad setting: the listeners opened here close again
        if opened:
            for listener in listeners:
                await trio.aclose_forcefully(listener)
        raise
    async with run_server(server):
        yield server


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
