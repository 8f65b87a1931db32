"""One serving process: import the app (``--app-dir``, ``--factory``, ``--http-hook``), map the
options onto :func:`~trio_ws.open_websocket_server`, and serve until SIGINT or SIGTERM (a second
signal stops at once). A worker of the supervisor also stops when its supervisor is gone."""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Callable
from typing import Any

import trio

from ..app import Metrics, open_websocket_server
from ..connection import HTTPResponse, Request
from ..server import Handler, ProcessRequest
from ._sockets import describe, listening_sockets, trio_listeners
from ._tls import ssl_context
from ._values import CLIError, trusted_networks

__all__ = ["load_handler", "load_hook", "run_here", "serve", "server_options", "strip_root", "use_app_dir"]

logger = logging.getLogger("trio_ws")

_SUPERVISOR_CHECK = 1.0  # seconds between checks that a worker's supervisor is still there


def use_app_dir(app_dir: str) -> None:
    """Put ``app_dir`` first on ``sys.path`` (where the app is imported from)."""
    path = os.path.abspath(app_dir)
    if not os.path.isdir(path):
        raise CLIError(f"--app-dir {app_dir} is not a directory")
    if not sys.path or os.path.abspath(sys.path[0] or ".") != path:
        sys.path.insert(0, path)


def _load(target: str, what: str) -> Any:
    """The object named by ``module:attribute`` (the attribute may be dotted)."""
    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute:
        example = "myapp:app" if what == "app" else "examples.echo:echo"
        raise CLIError(f"expected module:{what}, got {target!r} (for example: {example})")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise CLIError(f"cannot import module {module_name!r}: no such module") from None
        raise
    obj: Any = module
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CLIError(f"module {module_name!r} has no attribute {attribute!r}") from None
    return obj


def load_handler(args: argparse.Namespace) -> Handler:
    """The handler ``APP`` names (with ``--factory``: what calling it returns)."""
    target: str = args.target
    obj = _load(target, "app" if args.asgi else "handler")
    if args.factory:
        if not callable(obj):
            raise CLIError(f"{target!r} is not a factory: {type(obj).__name__} is not callable")
        obj = obj()
        if inspect.isawaitable(obj):
            if inspect.iscoroutine(obj):
                obj.close()
            raise CLIError(f"the factory {target!r} is async: it must return the handler itself")
        if not callable(obj):
            raise CLIError(f"the factory {target!r} returned {type(obj).__name__}, not a handler")
    elif not callable(obj):
        raise CLIError(f"{target!r} is not a handler: {type(obj).__name__} is not callable")
    return obj  # type: ignore[no-any-return]


def load_hook(args: argparse.Namespace) -> ProcessRequest | None:
    """The ``--http-hook`` function, if any."""
    if args.http_hook is None:
        return None
    hook = _load(args.http_hook, "function")
    call = type(hook).__call__ if callable(hook) else None  # (an object with an async __call__ does)
    if not (inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(call)):
        kind = "a function" if callable(hook) else type(hook).__name__
        raise CLIError(f"--http-hook {args.http_hook} is {kind}, not an async function")
    return hook  # type: ignore[no-any-return]


def strip_root(target: str, root: str) -> str:
    """``target`` without the ``root`` prefix, if it starts with it (``/api/chat?x`` -> ``/chat?x``)."""
    if target == root or target.startswith((root + "/", root + "?")):
        rest = target[len(root) :]
        return rest if rest.startswith("/") else "/" + rest
    return target


def _request_hook(root: str, hook: ProcessRequest | None) -> ProcessRequest | None:
    """The server's HTTP hook: ``--root-path`` taken off the request, then ``--http-hook``."""
    if not root:
        return hook

    async def process_request(request: Request) -> HTTPResponse | None:
        request.target = strip_root(request.target, root)
        if hook is None:
            await trio.lowlevel.checkpoint()
            return None
        return await hook(request)

    return process_request


def server_options(args: argparse.Namespace, hook: ProcessRequest | None) -> dict[str, Any]:
    """The keyword arguments of :func:`~trio_ws.open_websocket_server` the options ask for (with
    ``--asgi``, of :func:`trio_ws.asgi.open_asgi_server`)."""
    options: dict[str, Any] = {
        "subprotocols": tuple(args.subprotocol or ()),
        "server_header": "trio_ws" if args.server_header else None,
        "max_request_size": args.max_request_size,
        "process_request": _request_hook("" if args.asgi else args.root_path, hook),
        "max_connections": args.limit_concurrency,
        "max_connections_per_client": args.limit_per_client,
        "trusted_proxies": trusted_networks(args.forwarded_allow_ips) if args.proxy_headers else (),
        # WebSocketOptions
        "max_message_size": args.ws_max_size or None,
        "max_queue": args.ws_max_queue,
        "ping_interval": args.ws_ping_interval or None,
        "ping_timeout": args.ws_ping_timeout or None,
        "open_timeout": args.ws_open_timeout,
        "close_timeout": args.timeout_graceful_shutdown,
    }
    if not args.ws_per_message_deflate:
        options["compression"] = None
    options["access_log_query"] = args.access_log_query
    if args.asgi:
        options["root_path"] = args.root_path
        options["lifespan"] = args.lifespan
        options["keep_alive_timeout"] = args.timeout_keep_alive
        options["max_body_size"] = args.max_body_size or None
    if args.metrics:  # (checked before the workers start)
        metrics = Metrics()
        options["observer"] = metrics
        options["process_request"] = metrics.endpoint(args.metrics, options["process_request"])
    return options


async def _watch_signals(signals: Any, serving: trio.CancelScope) -> None:
    async for signum in signals:
        if not serving.cancel_called:
            logger.info("%s: shutting down (again to stop at once)", signal.Signals(signum).name)
            serving.cancel()  # leaving open_websocket_server closes every client with 1001
        else:
            logger.warning("%s again: stopping at once", signal.Signals(signum).name)
            os._exit(1)


async def _watch_supervisor(supervisor: int, serving: trio.CancelScope) -> None:
    """Shut down if the supervisor is gone (killed, say): no worker outlives it for long."""
    while True:
        await trio.sleep(_SUPERVISOR_CHECK)
        if os.getppid() != supervisor:
            break
    logger.warning("the supervisor (pid %d) is gone: shutting down", supervisor)
    serving.cancel()


async def serve(
    args: argparse.Namespace,
    handler: Handler,
    hook: ProcessRequest | None,
    context: ssl.SSLContext | None,
    sockets: list[socket.socket],
) -> None:
    """Serve on ``sockets`` until SIGINT or SIGTERM, then shut down gracefully."""
    supervisor = os.getppid()
    where = ", ".join(describe(sock, context is not None, http=args.asgi) for sock in sockets)
    listeners = trio_listeners(sockets, context)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            serving = trio.CancelScope()
            nursery.start_soon(_watch_signals, signals, serving)
            if args.worker:
                nursery.start_soon(_watch_supervisor, supervisor, serving)
            failure = None
            opening, startup_failed = _opening(args)
            with serving:
                options = server_options(args, hook)
                try:
                    async with opening(handler, listeners=listeners, **options):
                        logger.info("serving %s on %s (pid %d)", args.target, where, os.getpid())
                        await trio.sleep_forever()
                except startup_failed as exc:  # the ASGI application's startup failed
                    failure = exc
            if failure is None:
                logger.info("stopped")
            nursery.cancel_scope.cancel()
    if failure is not None:
        raise CLIError(str(failure), code=3)


class _NoStartup(Exception):
    """(What a server without an application's startup cannot fail with.)"""


def _opening(args: argparse.Namespace) -> tuple[Callable[..., Any], type[Exception]]:
    """What opens the server, and the exception that says its application's startup failed."""
    if not args.asgi:
        return open_websocket_server, _NoStartup
    from ..asgi import LifespanFailed, open_asgi_server  # (only with --asgi: it needs h11, an extra)

    return open_asgi_server, LifespanFailed


def run_here(args: argparse.Namespace) -> int:
    """Serve in this process: import the app, listen, serve until a signal. The exit status."""
    use_app_dir(args.app_dir)
    handler = load_handler(args)
    hook = load_hook(args)
    context = ssl_context(args)
    with listening_sockets(args) as sockets:
        trio.run(serve, args, handler, hook, context, sockets)
    return 0
