"""Serving a handler in one line, the way a script starts a server: :func:`run`.

Also the pieces a command line shares with it: stopping on SIGINT/SIGTERM (:func:`shutdown_signals`),
the URLs a server listens on (:func:`server_urls`) and a bind error in words (:func:`listen_error`).
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any

import trio

from ..server import Handler, WebSocketServer, open_listeners
from ._serving import open_websocket_server

__all__ = ["listen_error", "run", "server_urls", "shutdown_signals"]

logger = logging.getLogger("trio_ws")

#: What :func:`run` calls with the listening server: an async context manager that runs for the
#: server's life.
Lifespan = Callable[[WebSocketServer], AbstractAsyncContextManager[object]]


def run(
    handler: Handler,
    host: str | bytes | None = "127.0.0.1",
    port: int = 8000,
    *,
    lifespan: Lifespan | None = None,
    **options: Any,
) -> None:
    """Serve ``handler`` on ``host:port`` until SIGINT (Ctrl+C) or SIGTERM; then shut down gracefully
    and return. The one line that starts a server from a script: ``trio_ws.run(echo)``.

    It says where it listens (``listening on ws://127.0.0.1:8000``; IPv6 addresses in brackets,
    ``wss://`` with an ``ssl_context``), and when it shuts down. Those lines go to the ``trio_ws``
    logger at INFO when the application's logging shows them, and to stderr otherwise. ``host``:
    ``None`` listens on every interface; ``port``: ``0`` picks a free one.

    The first SIGINT or SIGTERM shuts down gracefully: no new connections, handshakes in progress
    get 503, every connection gets close code 1001 (going away), and the server waits up to
    ``close_timeout`` for them (see :meth:`WebSocketServer.aclose`). A second signal stops the
    process at once (exit status 1).

    ``lifespan``: called with the :class:`WebSocketServer` once it listens; the async context
    manager it returns is entered then and exited once every connection is closed (open rooms,
    start background tasks, print where to point a browser: ``server.port``). Other keyword
    ``options`` are those of :func:`open_websocket_server` (``ssl_context``, ``process_request``,
    ``origins``, ``max_connections``, :class:`WebSocketOptions` fields...).

    Must be called outside a trio loop (it calls ``trio.run``); inside one, use
    :func:`serve_websocket` or :func:`open_websocket_server`.

    Error handling: when it cannot listen (the port is in use, no permission, an unknown host), it
    raises ``SystemExit`` with a one-line message: the script prints it to stderr, without a
    traceback, and exits with status 1. An exception of ``lifespan``, or of the server's own tasks,
    propagates. A handler's exception is that connection's: it is logged with its traceback on the
    ``trio_ws`` logger (to stderr when logging is not configured) and closes the connection with
    1011; the server goes on.
    """
    try:
        trio.run(_serve, handler, host, port, lifespan, options)
    except KeyboardInterrupt:  # Ctrl+C before the signals were ours: nothing was listening yet
        raise SystemExit(130) from None


async def _serve(
    handler: Handler,
    host: str | bytes | None,
    port: int,
    lifespan: Lifespan | None,
    options: dict[str, Any],
) -> None:
    listeners = options.pop("listeners", None)
    if listeners is None:
        try:
            listeners = await open_listeners(host, port, options.pop("ssl_context", None))
        except OSError as exc:
            raise SystemExit(f"trio_ws: error: {listen_error(exc, host, port)}") from None
    async with (
        shutdown_signals(_say) as stop,
        open_websocket_server(handler, listeners=listeners, **options) as server,
    ):
        urls = " and ".join(server_urls(server.listeners)) or "its listeners"
        _say(f"listening on {urls} (Ctrl+C to stop)")
        async with nullcontext() if lifespan is None else lifespan(server):
            await stop.wait()
            await server.aclose()  # inside the lifespan: it ends after the last connection
    _say("stopped")


def _say(message: str) -> None:
    """Log ``message`` at INFO if the application's logging shows it; print it to stderr otherwise."""
    if logger.isEnabledFor(logging.INFO) and logger.hasHandlers():
        logger.info(message)
    else:
        print(f"trio_ws: {message}", file=sys.stderr, flush=True)


@asynccontextmanager
async def shutdown_signals(say: Callable[[str], object]) -> AsyncIterator[trio.Event]:
    """SIGINT and SIGTERM for the block's duration: the first sets the event it yields (the
    block then shuts down, gracefully: its job); a second one stops the process at once, with
    ``os._exit(1)``. ``say`` gets what happens, in words (``SIGINT: shutting down ...``).

    An exception raised in the block propagates unchanged.
    """
    stop = trio.Event()
    error: Exception | None = None
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, signals, stop, say)
            try:
                yield stop
            except Exception as exc:  # not wrapped in the nursery's group
                error = exc
            finally:
                nursery.cancel_scope.cancel()
    if error is not None:
        raise error


async def _watch_signals(signals: AsyncIterator[int], stop: trio.Event, say: Callable[[str], object]) -> None:
    async for signum in signals:
        name = signal.Signals(signum).name
        if not stop.is_set():
            say(f"{name}: shutting down, closing every connection with 1001 (again to stop at once)")
            stop.set()
        else:
            say(f"{name} again: stopping at once")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)


def server_urls(listeners: Sequence[trio.abc.Listener[Any]]) -> list[str]:
    """The ``ws://`` (or ``wss://``) URL of each TCP listener: ``ws://127.0.0.1:8000``,
    ``ws://[::1]:8000``."""
    urls = []
    for listener in listeners:
        scheme = "ws"
        while isinstance(listener, trio.SSLListener):
            scheme = "wss"
            listener = listener.transport_listener
        if isinstance(listener, trio.SocketListener):
            address, port = listener.socket.getsockname()[:2]
            urls.append(f"{scheme}://{_bracketed(address)}:{port}")
    return urls


def listen_error(exc: OSError, host: str | bytes | None, port: int) -> str:
    """Why a server could not listen on ``host:port``, in one line: ``port 8000 is in use on
    127.0.0.1``."""
    name = "every interface" if host is None else host.decode() if isinstance(host, bytes) else host
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is in use on {name}"
    if exc.errno == errno.EACCES:
        return f"no permission to listen on port {port} of {name}"
    where = f"port {port}" if host is None else f"{_bracketed(name)}:{port}"
    return f"cannot listen on {where}: {exc.strerror or exc}"


def _bracketed(address: str) -> str:
    return f"[{address}]" if ":" in address else address
