"""The command line: ``python -m trio_ws module:handler`` (also installed as ``trio-ws``).

One process, or ``--workers N`` processes sharing the port through ``SO_REUSEPORT``, each with its own
trio loop. SIGINT or SIGTERM shuts down gracefully (close 1001 to every client, bounded by the close
timeout); a second signal stops at once.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import trio

from .app import open_websocket_server
from .server import Handler

__all__ = ["main"]

logger = logging.getLogger("trio_ws")


class CLIError(Exception):
    """A problem with the command line's arguments: printed without a traceback, exit code 2."""


def load_handler(target: str) -> Handler:
    """The object named by ``module:attribute`` (the attribute may be dotted)."""
    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute:
        raise CLIError(f"expected module:handler, got {target!r} (for example: examples.echo:echo)")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: modules of the current directory
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
    if not callable(obj):
        raise CLIError(f"{target!r} is not a handler: {type(obj).__name__} is not callable")
    return obj  # type: ignore[no-any-return]


def ssl_context(certfile: str | None, keyfile: str | None) -> ssl.SSLContext | None:
    if certfile is None and keyfile is None:
        return None
    if certfile is None:
        raise CLIError("--ssl-keyfile needs --ssl-certfile")
    for path in (certfile, keyfile):
        if path is not None and not os.path.isfile(path):
            raise CLIError(f"certificate file not found: {path}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (ssl.SSLError, OSError) as exc:
        raise CLIError(f"cannot load the certificate {certfile}: {exc}") from None
    return context


async def make_listeners(
    host: str, port: int, reuse_port: bool, context: ssl.SSLContext | None
) -> list[trio.abc.Listener[Any]]:
    """TCP listeners (one socket with ``SO_REUSEPORT`` for a worker), wrapped in TLS if asked."""
    listeners: list[trio.abc.Listener[Any]]
    if reuse_port:
        sock = trio.socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        await sock.bind((host, port))
        sock.listen(socket.SOMAXCONN)
        listeners = [trio.SocketListener(sock)]
    else:
        listeners = list(await trio.open_tcp_listeners(port, host=host))
    if context is not None:
        listeners = [trio.SSLListener(lst, context, https_compatible=False) for lst in listeners]
    return listeners


async def serve(args: argparse.Namespace, handler: Handler, context: ssl.SSLContext | None) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully; a second signal exits at once."""
    listeners = await make_listeners(args.host, args.port, args.reuse_port, context)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            serving = trio.CancelScope()

            async def watch_signals() -> None:
                async for signum in signals:
                    if not serving.cancel_called:
                        logger.info("%s: shutting down (again to stop at once)", signal.Signals(signum).name)
                        serving.cancel()  # leaving open_websocket_server closes every client with 1001
                    else:
                        logger.warning("%s again: stopping at once", signal.Signals(signum).name)
                        os._exit(1)

            nursery.start_soon(watch_signals)
            with serving:
                async with open_websocket_server(handler, listeners=listeners) as server:
                    scheme = "wss" if context is not None else "ws"
                    logger.info(
                        "serving %s on %s://%s:%s (pid %d)",
                        args.target,
                        scheme,
                        args.host,
                        server.port,
                        os.getpid(),
                    )
                    await trio.sleep_forever()
            logger.info("stopped")
            nursery.cancel_scope.cancel()


def run_workers(args: argparse.Namespace) -> int:
    """Start ``--workers`` processes on the same port, each its own session (a terminal's Ctrl+C
    reaches only this one); forward SIGINT/SIGTERM to them, and SIGKILL on a second signal."""
    command = [sys.executable, "-m", "trio_ws", args.target, "--host", args.host, "--port", str(args.port)]
    command += ["--log-level", args.log_level, "--reuse-port"]
    if args.ssl_certfile:
        command += ["--ssl-certfile", args.ssl_certfile]
    if args.ssl_keyfile:
        command += ["--ssl-keyfile", args.ssl_keyfile]
    # The workers import the target as this process did: with its sys.path.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
    children = [subprocess.Popen(command, start_new_session=True, env=env) for _ in range(args.workers)]
    seen = 0

    def forward(signum: int, frame: Any) -> None:
        nonlocal seen
        seen += 1
        for child in children:
            if child.poll() is None:
                child.send_signal(signum if seen == 1 else signal.SIGKILL)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    codes = [child.wait() for child in children]
    return 0 if seen else max(abs(code) for code in codes)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trio_ws",
        description="Serve a trio_ws handler (or Router): python -m trio_ws examples.echo:echo --port 8000",
    )
    p.add_argument("target", help="module:handler, e.g. myapp.server:router")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 for any)")
    p.add_argument("--ssl-certfile", help="serve wss:// with this certificate (PEM)")
    p.add_argument("--ssl-keyfile", help="its private key (PEM), if not in the certificate file")
    p.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="log level of the trio_ws logger, access lines included at info (default: info)",
    )
    p.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); exits the process.

    An example script can serve its own router with ``run_cli([f"{Path(__file__).stem}:router",
    *sys.argv[1:]])`` and get every option of ``python -m trio_ws``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("trio_ws").setLevel(args.log_level.upper())
    try:
        handler = load_handler(args.target)  # in the parent too: errors before any worker starts
        context = ssl_context(args.ssl_certfile, args.ssl_keyfile)
        if args.workers < 1:
            raise CLIError("--workers must be at least 1")
        if args.workers > 1:
            if args.port == 0:
                raise CLIError("--workers needs a fixed --port")
            _check_port_free(args.host, args.port)
            sys.exit(run_workers(args))
        trio.run(serve, args, handler, context)
    except CLIError as exc:
        print(f"trio_ws: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE or "address already in use" in str(exc).lower():
            print(f"trio_ws: error: port {args.port} is in use on {args.host}", file=sys.stderr)
            sys.exit(1)
        raise
    sys.exit(0)


def _check_port_free(host: str, port: int) -> None:
    """Fail early if a process that does not share the port holds it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.bind((host, port))
