"""The command line's options: one table, from which come the parser, the ``TRIO_WS_*``
environment variables, the arguments handed to worker processes and the reference page
(``docs/cli.md``)."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Sequence
from typing import Any, NoReturn

import attrs

from ..app import open_websocket_server
from ..connection import WebSocketOptions
from . import _values as v

__all__ = ["ASGI_DEFAULTS", "ENV_PREFIX", "AppendOption", "CommandLineParser", "Option", "build_parser"]

ENV_PREFIX = "TRIO_WS_"

_OPTIONS = WebSocketOptions()
_SERVER = inspect.signature(open_websocket_server).parameters
LOG_LEVELS = ["critical", "error", "warning", "info", "debug"]
#: The defaults of ``trio_ws.asgi.open_asgi_server`` (not imported here: it needs h11, an extra;
#: tests/test_asgi_cli.py checks them).
ASGI_DEFAULTS: dict[str, Any] = {"lifespan": "auto", "keep_alive_timeout": 5.0, "max_body_size": 16 * 2**20}


@attrs.frozen
class Option:
    """One option of the command line: its parser action, the section of the help and of the
    reference it belongs to, its environment variable (``None``: none) and its help without the
    default."""

    action: argparse.Action
    section: str
    env: str | None
    help: str


class AppendOption(argparse.Action):
    """A repeatable option (``--reload-dir a --reload-dir b``). The first use on the command line
    replaces the default (from the environment, say) instead of adding to it."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        current = getattr(namespace, self.dest, None)
        if current is None or current is self.default:
            current = []
        setattr(namespace, self.dest, [*current, values])


class CommandLineParser(argparse.ArgumentParser):
    """The parser, with the table of its options (``options``). Errors are one line."""

    def __init__(self, prog: str, version: str) -> None:
        super().__init__(
            prog=prog,
            usage="%(prog)s [options] APP",
            description=f"Serve a trio_ws handler or Router: {prog} myapp:router --port 8000; "
            f"or an ASGI application: {prog} --asgi myapp:app",
            epilog=(
                f"Every option can also be set by an environment variable {ENV_PREFIX}<OPTION> "
                f"({ENV_PREFIX}PORT=9000, {ENV_PREFIX}WORKERS=4, {ENV_PREFIX}APP=myapp:router; "
                "switches take 1/0, true/false, yes/no, on/off; repeatable options a comma-separated "
                "list); the command line wins."
            ),
            formatter_class=lambda prog: argparse.HelpFormatter(prog, max_help_position=34),
        )
        self.options: list[Option] = []
        self._sections: dict[str, Any] = {}
        self.add_argument("--version", action="version", version=f"trio-ws {version}")

    def error(self, message: str) -> NoReturn:
        """Print ``message`` on one line (no usage block) and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def add(self, section: str, *flags: str, env: bool = True, **kwargs: Any) -> argparse.Action:
        """Add an option to ``section`` of the help; ``env``: it has a ``TRIO_WS_*`` variable."""
        text = kwargs.get("help", "")
        hidden = text is argparse.SUPPRESS
        if hidden:
            action = self.add_argument(*flags, **kwargs)
        else:
            if section not in self._sections:
                self._sections[section] = self.add_argument_group(section)
            action = self._sections[section].add_argument(*flags, **kwargs)
            default = action.default
            if not (default is None or default is False or default == "" or default == []):
                shown = "on" if default is True else "%(default)s"
                action.help = f"{text} (default: {shown})"
            else:
                action.help = text
        name = "APP" if not action.option_strings else action.dest.upper()
        variable = f"{ENV_PREFIX}{name}" if env and not hidden else None
        self.options.append(Option(action, section, variable, text))
        return action


def build_parser(prog: str = "trio-ws", version: str = "") -> CommandLineParser:
    """The command line's parser (defaults not yet taken from the environment)."""
    p = CommandLineParser(prog, version)
    switch = argparse.BooleanOptionalAction

    s = "Application"
    p.add(
        s,
        "target",
        metavar="APP",
        nargs="?",
        help="what to serve, as module:attribute (a Router, or any async def handler(ws); with --asgi, "
        "an ASGI application)",
    )
    p.add(s, "--factory", action="store_true", help="APP is a callable that returns the handler")
    p.add(s, "--app-dir", metavar="DIR", default=".", help="directory put first on sys.path to import APP")
    p.add(
        s,
        "--http-hook",
        metavar="MODULE:FUNC",
        type=v.import_string,
        help="async def hook(request) -> HTTPResponse | None, run on every request before the "
        "handshake (health checks, static pages); None goes on with the handshake",
    )

    s = "ASGI applications"
    p.add(
        s,
        "--asgi",
        action="store_true",
        help="APP is an ASGI application (Starlette, FastAPI...): its HTTP routes too, on the same port, "
        "and its lifespan (needs trio-ws[asgi])",
    )
    p.add(
        s,
        "--lifespan",
        default=ASGI_DEFAULTS["lifespan"],
        choices=["auto", "on", "off"],
        help="with --asgi: run the application's startup and shutdown (auto: if it speaks the lifespan "
        "protocol; on: it must)",
    )
    p.add(
        s,
        "--timeout-keep-alive",
        metavar="SECONDS",
        default=ASGI_DEFAULTS["keep_alive_timeout"],
        type=v.seconds,
        help="with --asgi: how long an HTTP connection may stay idle between requests",
    )
    p.add(
        s,
        "--max-body-size",
        metavar="BYTES",
        default=ASGI_DEFAULTS["max_body_size"],
        type=v.byte_count,
        help="with --asgi: largest HTTP request body, larger gets 413 (0: no limit)",
    )

    s = "Where to listen"
    p.add(s, "--host", default="127.0.0.1", type=v.host_name, help="address or name to listen on")
    p.add(s, "--port", default=8000, type=v.port_number, help="TCP port, 0-65535 (0: any free port)")
    p.add(s, "--uds", metavar="PATH", help="listen on this Unix socket instead of --host/--port")
    p.add(
        s,
        "--fd",
        metavar="N",
        type=v.file_descriptor,
        action=AppendOption,
        help="serve on this inherited listening socket (TCP or Unix) instead; may be repeated",
    )
    p.add(s, "--backlog", metavar="N", default=2048, type=v.positive_int, help="listen queue length")
    p.add(s, "--reuse-port", action="store_true", help=argparse.SUPPRESS)  # (the workers')

    s = "TLS (wss://)"
    p.add(s, "--ssl-certfile", metavar="FILE", help="serve wss:// with this certificate chain (PEM)")
    p.add(s, "--ssl-keyfile", metavar="FILE", help="its private key (PEM), if not in the certificate file")
    p.add(s, "--ssl-keyfile-password", metavar="PASSWORD", help="the password of an encrypted key")
    p.add(s, "--ssl-ca-certs", metavar="FILE", help="CA certificates (PEM) to verify client certificates")
    p.add(
        s,
        "--ssl-cert-reqs",
        default="none",
        choices=["none", "optional", "required"],
        help="ask clients for a certificate (verified against --ssl-ca-certs)",
    )
    p.add(s, "--ssl-ciphers", metavar="CIPHERS", help="OpenSSL cipher list (default: Python's)")

    s = "WebSocket"
    p.add(
        s,
        "--ws-max-size",
        metavar="BYTES",
        default=_OPTIONS.max_message_size or 0,
        type=v.byte_count,
        help="largest message received, larger closes with 1009 (0: no limit)",
    )
    p.add(
        s,
        "--ws-max-queue",
        metavar="N",
        default=_OPTIONS.max_queue,
        type=v.positive_int,
        help="received messages waiting for the handler before reading stops",
    )
    p.add(
        s,
        "--ws-ping-interval",
        metavar="SECONDS",
        default=_OPTIONS.ping_interval or 0.0,
        type=v.seconds,
        help="send a keepalive ping this often (0: never)",
    )
    p.add(
        s,
        "--ws-ping-timeout",
        metavar="SECONDS",
        default=_OPTIONS.ping_timeout or 0.0,
        type=v.seconds,
        help="close with 1011 when a ping's pong takes longer (0: wait for ever)",
    )
    p.add(
        s,
        "--ws-per-message-deflate",
        action=switch,
        default=True,
        help="permessage-deflate compression, when the client offers it",
    )
    p.add(
        s,
        "--ws-open-timeout",
        metavar="SECONDS",
        default=_OPTIONS.open_timeout,
        type=v.seconds,
        help="time for the TLS and the opening handshake (with --asgi also each HTTP request head, "
        "and each read of a request body)",
    )
    p.add(
        s,
        "--subprotocol",
        metavar="NAME",
        action=AppendOption,
        help="a subprotocol the server speaks, when the handler does not choose; may be repeated",
    )
    p.add(
        s,
        "--max-request-size",
        metavar="BYTES",
        default=_SERVER["max_request_size"].default,
        type=v.positive_int,
        help="largest request head, larger gets 431",
    )
    p.add(s, "--server-header", action=switch, default=True, help="send 'Server: trio_ws'")

    s = "Limits and shutdown"
    p.add(
        s,
        "--limit-concurrency",
        metavar="N",
        type=v.positive_int,
        help="connections at once per process, beyond which handshakes get 503 (default: no limit)",
    )
    p.add(
        s,
        "--limit-per-client",
        metavar="N",
        type=v.positive_int,
        help="connections at once per client address, beyond which handshakes get 429",
    )
    p.add(
        s,
        "--timeout-graceful-shutdown",
        metavar="SECONDS",
        default=_OPTIONS.close_timeout,
        type=v.seconds,
        help="on shutdown, how long clients have to answer the close 1001 before they are cut off "
        "(also each connection's closing handshake)",
    )

    s = "Behind a proxy"
    p.add(
        s,
        "--proxy-headers",
        action=switch,
        default=True,
        help="take the client's address from Forwarded / X-Forwarded-For, when the peer is one of "
        "--forwarded-allow-ips",
    )
    p.add(
        s,
        "--forwarded-allow-ips",
        metavar="LIST",
        default="127.0.0.1",
        type=v.forwarded_ips,
        help="comma-separated proxy addresses or networks trusted for proxy headers ('*': any)",
    )
    p.add(
        s,
        "--root-path",
        metavar="PATH",
        default="",
        type=v.root_path,
        help="the path prefix the app is mounted at: removed from request paths that start with it "
        "before the HTTP hook and the handler see them (with --asgi: the scopes' root_path, which "
        "prefixes their paths, as uvicorn does)",
    )

    s = "Processes"
    p.add(
        s,
        "--workers",
        metavar="N",
        default=1,
        type=v.positive_int,
        help="processes sharing the port (SO_REUSEPORT); one that dies is restarted",
    )
    p.add(
        s,
        "--max-worker-restarts",
        metavar="N",
        default=10,
        type=v.non_negative_int,
        help="restarts within a minute after which the supervisor gives up and exits with status 1",
    )
    p.add(s, "--reload", action="store_true", help="restart when a file changes (needs watchfiles)")
    p.add(
        s,
        "--reload-dir",
        metavar="DIR",
        action=AppendOption,
        help="directory to watch for --reload; may be repeated (default: --app-dir)",
    )
    p.add(
        s,
        "--reload-include",
        metavar="GLOB",
        action=AppendOption,
        help="file names that trigger a reload; may be repeated (default: *.py)",
    )
    p.add(
        s,
        "--reload-exclude",
        metavar="GLOB",
        action=AppendOption,
        help="file names that do not; may be repeated (default: .* *~ *.py[cod])",
    )
    p.add(s, "--worker", action="store_true", help=argparse.SUPPRESS)  # (started by the supervisor)

    s = "Logging"
    p.add(
        s,
        "--log-level",
        choices=LOG_LEVELS,
        help="level of the trio_ws loggers, access lines at info (default: info, or the --log-config's)",
    )
    p.add(
        s,
        "--log-config",
        metavar="FILE",
        help="logging configuration: dictConfig JSON (.json), YAML (.yaml, .yml, needs PyYAML) or "
        "fileConfig INI (any other name)",
    )
    p.add(s, "--access-log", action=switch, default=True, help="one line per connection on trio_ws.access")
    p.add(
        s,
        "--access-log-query",
        action=switch,
        default=False,
        help="keep the query string in access lines (left out by default: it may carry a token)",
    )
    p.add(
        s,
        "--metrics",
        metavar="PATH",
        help="serve Prometheus metrics at PATH on the same port, e.g. /metrics (needs trio-ws[metrics]; "
        "with --workers each worker counts for itself)",
    )
    return p
