"""Serving an ASGI application: :func:`open_asgi_server` and :func:`serve_asgi`, the trio_ws
server (its listeners, limits, security checks, shutdown with 1001, access log) with the ASGI
application's WebSocket side as its handler, its HTTP side served by h11, and its lifespan."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from ..app import open_websocket_server
from ..connection import WebSocketOptions
from ..server import WebSocketServer
from ._asgi_types import ASGIApp
from ._bridge import ASGIAppHandler
from ._lifespan import LIFESPAN_MODES, LifespanRunner

__all__ = ["open_asgi_server", "serve_asgi"]

_CLOSE_TIMEOUT = WebSocketOptions().close_timeout


def _check(root_path: str, lifespan: str, keep_alive_timeout: float, max_body_size: int | None) -> str:
    """``root_path`` without a trailing ``/``; ``ValueError`` for a setting out of range."""
    if lifespan not in LIFESPAN_MODES:
        raise ValueError(f"lifespan is one of {LIFESPAN_MODES}, not {lifespan!r}")
    root = root_path.rstrip("/")
    if root and not root.startswith("/"):
        raise ValueError(f"root_path starts with '/': {root_path!r}")
    if not keep_alive_timeout > 0:
        raise ValueError(f"keep_alive_timeout must be more than 0, not {keep_alive_timeout!r}")
    if max_body_size is not None and max_body_size < 0:
        raise ValueError(f"max_body_size must be 0 or more (or None), not {max_body_size!r}")
    return root


@asynccontextmanager
async def open_asgi_server(
    app: ASGIApp,
    host: str | bytes | None = None,
    port: int = 0,
    *,
    root_path: str = "",
    lifespan: str = "auto",
    keep_alive_timeout: float = 5.0,
    max_body_size: int | None = 16 * 2**20,
    **settings: Any,
) -> AsyncIterator[WebSocketServer]:
    """Serve the ASGI application ``app`` (Starlette, FastAPI, any ASGI 3 application) on
    ``host:port`` for the block's duration: its WebSocket endpoints and its HTTP routes, on the
    same port. Yields the running :class:`~trio_ws.WebSocketServer` (``server.port``,
    ``server.connections``: the open WebSockets).

    ``root_path``: the path prefix the application is mounted at behind a proxy; it is the scopes'
    ``root_path`` and prefixes their ``path`` and ``raw_path``, as uvicorn does. ``lifespan``:
    ``"auto"`` runs the application's lifespan (startup before the first connection, shutdown after
    the last) if it speaks the protocol, ``"on"`` requires it, ``"off"`` skips it; what the
    startup keeps in the lifespan ``state`` is copied (shallow) into every request's and
    connection's scope. ``keep_alive_timeout``: seconds an HTTP connection may stay idle between
    requests. ``max_body_size``: the largest HTTP request body (413 beyond; ``None``: no limit).

    Every other keyword is a setting of :func:`~trio_ws.open_websocket_server`, with the same
    meaning: ``ssl_context`` (https and wss), ``listeners``, ``max_request_size`` (an HTTP request
    head's limit too, 431 beyond), ``open_timeout`` (each HTTP request head's time too, and each
    read of a body's: 408 beyond), ``close_timeout`` (the time responses under way get at shutdown,
    and an application whose client is gone before it is cancelled), ``origins`` and the
    other security checks (WebSocket handshakes only), ``max_connections`` (HTTP connections
    count), ``trusted_proxies`` (the scopes' ``client`` and ``scheme``), ``process_request`` (sees
    every request first, HTTP ones too), ``observer``, ``access_log_query`` (one access line per
    HTTP request, one per WebSocket) and the :class:`~trio_ws.WebSocketOptions` fields.

    Leaving the block — normally, by an exception or by cancellation — shuts down gracefully: new
    connections are refused, idle HTTP connections close, responses under way get up to
    ``close_timeout``, every WebSocket gets close 1001; then the lifespan shutdown runs (bounded by
    ``close_timeout`` too).

    Error handling: :class:`LifespanFailed` (raised before anything listens) when the
    application's startup fails; ``ValueError`` for a setting out of range. An exception raised in
    the block propagates unchanged. The application's errors are its requests' and connections':
    logged on ``trio_ws.asgi``, answered with 500 (before a response or handshake answer) or a
    dropped connection / close 1011 (after).
    """
    from ._h11 import H11Server  # (here: trio_ws.asgi imports without h11, the extra)

    root = _check(root_path, lifespan, keep_alive_timeout, max_body_size)
    if "http_handler" in settings:
        raise TypeError("open_asgi_server() serves the application's HTTP side itself: no http_handler")
    state: dict[str, Any] = {}
    http = H11Server(
        app, root_path=root, state=state, keep_alive_timeout=keep_alive_timeout, max_body_size=max_body_size
    )
    handler = ASGIAppHandler(app, root, state)
    runner = None if lifespan == "off" else LifespanRunner(app, lifespan, state)
    error: Exception | None = None
    async with trio.open_nursery() as nursery:
        try:
            if runner is not None:
                await runner.startup(nursery)
            nursery.start_soon(http.watch_requests)
            async with open_websocket_server(handler, host, port, http_handler=http, **settings) as server:
                yield server
        except Exception as exc:  # (not wrapped in this nursery's group)
            error = exc
        finally:
            http.stop()
            if runner is not None:
                await runner.shutdown(float(settings.get("close_timeout", _CLOSE_TIMEOUT)))
    if error is not None:
        raise error


async def serve_asgi(
    app: ASGIApp,
    host: str | bytes | None,
    port: int,
    *,
    task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
    **settings: Any,
) -> None:
    """Serve the ASGI application ``app`` until cancelled; cancellation is a graceful shutdown
    (see :func:`open_asgi_server`, whose settings it takes). Calls ``task_status.started(server)``
    once listening, after the application's startup."""
    async with open_asgi_server(app, host, port, **settings) as server:
        task_status.started(server)
        await trio.sleep(math.inf)
