"""The command line: ``python -m trio_ws module:handler`` (also installed as ``trio-ws``).

One process serves; with ``--workers N`` or ``--reload`` a supervisor runs worker processes (each
its own trio loop) and restarts them when they die or when a file changes. SIGINT or SIGTERM shuts
down gracefully (close 1001 to every client, bounded by ``--timeout-graceful-shutdown``); a second
signal stops at once. Every option can also come from a ``TRIO_WS_*`` environment variable.

The modules: ``_arguments`` (the options' table and the parser), ``_values`` (their types),
``_environment`` (the variables; the arguments of a worker), ``_sockets`` and ``_tls`` (where to
listen), ``_worker`` (one serving process), ``_supervisor`` and ``_reloader`` (workers, reloading),
``_logconfig``, ``_reference`` (``docs/cli.md``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import trio

from ._arguments import CommandLineParser, build_parser
from ._environment import apply_environment, option_variables, worker_argv
from ._logconfig import configure_logging
from ._reloader import FileWatcher, require_watchfiles
from ._sockets import check_port_free, listening_sockets
from ._supervisor import Supervisor
from ._tls import ssl_context
from ._values import CLIError
from ._worker import load_handler, load_hook, run_here, use_app_dir

__all__ = ["MODULE_PROG", "main", "program_name"]

MODULE_PROG = "python -m trio_ws"


def program_name(argv0: str) -> str:
    """The name the command was run by, for its help and errors: ``trio-ws`` (the installed
    script), ``python -m trio_ws``, or a script's name (``python myapp.py``)."""
    name = os.path.basename(argv0)
    if name in ("", "-c", "-m", "__main__.py"):
        return MODULE_PROG
    return name


def _version() -> str:
    return str(importlib.import_module(__name__.rpartition(".")[0]).__version__)


def _check(parser: CommandLineParser, args: argparse.Namespace) -> None:
    """What no single option's type can check."""
    if args.target is None:
        what = "module:app" if args.asgi else "module:handler"
        parser.error(f"give the app to serve, as {what} (or set TRIO_WS_APP)")
    if args.uds and args.fd:
        raise CLIError("--uds and --fd: give one of them")
    if args.ws_open_timeout <= 0:
        raise CLIError("--ws-open-timeout must be more than 0")
    if args.workers > 1 and not args.worker and args.port == 0 and not (args.uds or args.fd):
        raise CLIError("--workers needs a fixed --port")
    if args.reload and not args.worker:
        require_watchfiles()
    if args.asgi and importlib.util.find_spec("h11") is None:
        raise CLIError("--asgi needs h11: pip install 'trio-ws[asgi]'")
    if args.metrics is not None:
        if not args.metrics.startswith("/"):
            raise CLIError(f"--metrics takes a path such as /metrics, not {args.metrics!r}")
        if importlib.util.find_spec("prometheus_client") is None:
            raise CLIError("--metrics needs prometheus-client: pip install 'trio-ws[metrics]'")


def _supervise(parser: CommandLineParser, args: argparse.Namespace) -> int:
    """Run ``--workers`` processes (or one, reloaded): the sockets made here and inherited by the
    workers, or with ``--workers`` on TCP, one socket per worker on the port (``SO_REUSEPORT``)."""
    watch = None
    if args.reload:
        directories = args.reload_dir or [args.app_dir]
        watch = FileWatcher(directories, args.reload_include or (), args.reload_exclude or ()).run
    else:  # import the app here too: a bad APP is reported once, before any worker starts
        use_app_dir(args.app_dir)
        load_handler(args)
        load_hook(args)
    ssl_context(args)  # (likewise for the certificate)
    command = [sys.executable, "-m", "trio_ws"]
    env = {name: value for name, value in os.environ.items() if name not in option_variables(parser)}
    # The workers import the app as this process would: with its sys.path.
    env["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
    if args.ssl_keyfile_password is not None:  # (not on their command lines, which ps shows)
        env["TRIO_WS_SSL_KEYFILE_PASSWORD"] = args.ssl_keyfile_password
    hidden = {"ssl_keyfile_password": None}

    def supervisor(argv: list[str], fds: Sequence[int] = ()) -> Supervisor:
        return Supervisor(
            command + argv,
            args.workers,
            env=env,
            pass_fds=fds,
            max_restarts=args.max_worker_restarts,
            watch=watch,
        )

    if args.workers > 1 and not (args.uds or args.fd):
        check_port_free(args.host, args.port)
        argv = worker_argv(parser, args, worker=True, reuse_port=True, **hidden)
        return trio.run(supervisor(argv).run)
    with listening_sockets(args) as sockets:
        fds = [sock.fileno() for sock in sockets]
        argv = worker_argv(parser, args, worker=True, fd=fds, uds=None, **hidden)
        return trio.run(supervisor(argv, fds).run)


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> NoReturn:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); exits the process.

    ``prog``: the name in its help and errors (default: the name it was run by). An example script
    can serve its own router with ``run_cli([f"{Path(__file__).stem}:router", *sys.argv[1:]])``
    and get every option of ``trio-ws`` (see ``docs/cli.md``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or program_name(sys.argv[0])
    parser = build_parser(prog, _version())
    try:
        apply_environment(parser, os.environ)
    except CLIError as exc:
        parser.error(str(exc))
    args = parser.parse_args(argv)
    try:
        _check(parser, args)
        configure_logging(args)
        if args.worker or (args.workers == 1 and not args.reload):
            code = run_here(args)
        else:
            code = _supervise(parser, args)
    except CLIError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(exc.code)
    sys.exit(code)
