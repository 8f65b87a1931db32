"""The command line, run as a user runs it: ``python -m trio_ws module:handler`` (and ``trio-ws``).

Its options are in tests/test_cli_options.py; this file has serving, signals, errors, the program's
name, TLS files, the supervisor of --workers, the environment variables and the reference page."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import ssl
import sys
import time
from pathlib import Path

import pytest
import trio
import trustme
from cli_process import APPS, ROOT, RawClient, cli_env, run_cli, run_cli_once
from helpers import free_port

import trio_ws
from trio_ws import WebSocketDisconnect, open_websocket


async def test_serves_a_router_and_sigint_closes_clients_with_1001_and_logs_access_lines() -> None:
    async with run_cli("cli_app:router", "--port", "0") as server:
        port = server.ports[0]
        async with open_websocket("127.0.0.1", port, "/pid") as ws:
            assert int(await ws.receive_text()) == server.pids[0]
            await ws.send_text("hello")
            assert await ws.receive_text() == "hello"
            server.process.send_signal(signal.SIGINT)
            with pytest.raises(WebSocketDisconnect) as info:
                await ws.receive_text()
            assert info.value.code == 1001
        with trio.fail_after(15):
            assert await server.process.wait() == 0
        await server.read_until(b"stopped")
    log = server.log
    assert "SIGINT: shutting down" in log
    # One access line per connection: client, path, outcome, duration, messages/bytes each way.
    assert re.search(r"trio_ws\.access: 127\.0\.0\.1:\d+ /pid 101 close=1001 [\d.]+s in=1/5B out=2/\d+B", log)


async def test_a_second_signal_stops_at_once() -> None:
    async with run_cli("cli_app:router", "--port", "0") as server:
        client = await RawClient.connect(server.ports[0])  # completes the handshake, never answers a close
        server.process.send_signal(signal.SIGTERM)
        await server.read_until(b"shutting down")
        start = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        with trio.fail_after(5):
            assert await server.process.wait() == 1
        assert time.monotonic() - start < 5  # not the 10 s close timeout
        await server.read_until(b"stopping at once")
        await client.stream.aclose()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no_such_module:handler"], "cannot import module 'no_such_module': no such module"),
        (["cli_app:nothing"], "module 'cli_app' has no attribute 'nothing'"),
        (["cli_app"], "expected module:handler"),
        (["cli_app:not_a_handler"], "is not a handler: int is not callable"),
        ([], "give the app to serve, as module:handler (or set TRIO_WS_APP)"),
        (["cli_app:router", "--ssl-certfile", "/nonexistent/cert.pem"], "certificate file not found"),
        (["cli_app:router", "--workers", "2", "--port", "0"], "--workers needs a fixed --port"),
        # Ports and hosts are checked up front (these served on a random port, or printed a traceback).
        (["cli_app:router", "--port", "99999"], "argument --port: a port is 0 to 65535, not 99999"),
        (["cli_app:router", "--port", "65536"], "argument --port: a port is 0 to 65535, not 65536"),
        (["cli_app:router", "--port", "-1"], "argument --port: a port is 0 to 65535, not -1"),
        (["cli_app:router", "--port", "http"], "argument --port: not a whole number: 'http'"),
        (
            ["cli_app:router", "--host", "999.1.1.1"],
            "'999.1.1.1' is not an IPv4 address (each part is 0-255)",
        ),
        (["cli_app:router", "--host", "not.a.host.invalid"], "cannot resolve 'not.a.host.invalid'"),
        (["cli_app:router", "--workers", "0"], "argument --workers: must be at least 1, not 0"),
        (["cli_app:router", "--ws-ping-interval", "soon"], "not a number of seconds: 'soon'"),
        (
            ["cli_app:router", "--forwarded-allow-ips", "10.0.0.0/8,proxy"],
            "not an IP address or network: 'proxy'",
        ),
        (["cli_app:router", "--root-path", "api"], "a root path starts with '/'"),
        (["cli_app:router", "--uds", "/tmp/x.sock", "--fd", "3"], "--uds and --fd: give one of them"),
        (["cli_app:router", "--fd", "987"], "--fd 987: no such open file descriptor"),
        (["cli_app:router", "--app-dir", "/nonexistent"], "--app-dir /nonexistent is not a directory"),
        (["cli_app:router", "--no-such-option"], "unrecognized arguments: --no-such-option"),
    ],
)
async def test_clear_errors(args: list[str], message: str) -> None:
    result = await run_cli_once(*args)
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert message in err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err  # one line
    assert err.startswith("python -m trio_ws: error: ")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TRIO_WS_PORT", "99999", "TRIO_WS_PORT='99999': a port is 0 to 65535, not 99999"),
        ("TRIO_WS_WORKERS", "many", "TRIO_WS_WORKERS='many': not a whole number: 'many'"),
        ("TRIO_WS_PROXY_HEADERS", "perhaps", "TRIO_WS_PROXY_HEADERS='perhaps': expected true or false"),
        ("TRIO_WS_LOG_LEVEL", "loud", "TRIO_WS_LOG_LEVEL='loud': expected one of critical, error"),
    ],
)
async def test_bad_environment_variables_are_one_line_errors(variable: str, value: str, message: str) -> None:
    result = await run_cli_once("cli_app:router", env={variable: value})
    err = result.stderr.decode()
    assert result.returncode == 2
    assert message in err
    assert err.count("\n") == 1, err


async def test_port_in_use() -> None:
    holder = trio.socket.socket()
    await holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    with holder:
        for extra in ([], ["--workers", "2"], ["--reload"]):
            result = await run_cli_once("cli_app:router", "--port", str(port), *extra)
            assert result.returncode == 1
            assert result.stderr.decode() == f"python -m trio_ws: error: port {port} is in use on 127.0.0.1\n"


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
async def test_an_ipv6_address_is_logged_in_brackets() -> None:
    async with run_cli("cli_app:router", "--host", "::1", "--port", "0") as server:
        assert re.search(r"serving cli_app:router on ws://\[::1\]:\d+ \(pid", server.log), server.log
        async with open_websocket("::1", server.ports[0], "/pid") as ws:
            assert int(await ws.receive_text()) == server.pids[0]


def _certificate(tmp_path: Path) -> tuple[trustme.CA, Path, Path]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    return ca, cert_file, key_file


async def test_wss_with_a_certificate_file(tmp_path: Path) -> None:
    ca, cert_file, key_file = _certificate(tmp_path)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    async with run_cli(
        "cli_app:router", "--port", "0", "--ssl-certfile", str(cert_file), "--ssl-keyfile", str(key_file)
    ) as server:
        assert b"wss://" in server.output
        async with open_websocket("127.0.0.1", server.ports[0], "/pid", ssl_context=client_context) as ws:
            assert int(await ws.receive_text()) == server.pids[0]


async def test_certificate_errors_say_which_file_and_what_to_do(tmp_path: Path) -> None:
    _, cert_file, key_file = _certificate(tmp_path)
    cases = [
        (["--ssl-certfile", str(cert_file)], "has no private key: give the key file with --ssl-keyfile"),
        (["--ssl-certfile", str(cert_file), "--ssl-keyfile", "/nonexistent/key.pem"], "key file not found"),
        (["--ssl-certfile", str(cert_file), "--ssl-keyfile", str(cert_file)], "holds no PEM private key"),
        (["--ssl-certfile", str(key_file)], "holds no PEM certificate"),
        (["--ssl-keyfile", str(key_file)], "--ssl-keyfile needs --ssl-certfile"),
    ]
    for args, message in cases:
        result = await run_cli_once("cli_app:router", *args)
        err = result.stderr.decode()
        assert result.returncode == 2
        assert message in err, err
        assert "PEM lib" not in err
        assert err.count("\n") == 1, err


async def test_help_and_version_name_the_program_as_it_was_run(tmp_path: Path) -> None:
    # The installed script, as the packaging tools write it.
    script = tmp_path / "trio-ws"
    script.write_text(
        "import sys\nfrom trio_ws._cli import main\nif __name__ == '__main__':\n    sys.exit(main())\n"
    )
    with trio.fail_after(30):
        as_script = await trio.run_process(
            [sys.executable, str(script), "--help"], capture_stdout=True, env=cli_env(), cwd=APPS
        )
    assert as_script.stdout.decode().startswith("usage: trio-ws ")
    as_module = await run_cli_once("--help")
    assert as_module.stdout.decode().startswith("usage: python -m trio_ws ")
    assert "TRIO_WS_PORT" in as_module.stdout.decode()
    version = await run_cli_once("--version")
    assert version.returncode == 0
    assert version.stdout.decode() == f"trio-ws {trio_ws.__version__}\n"
    from trio_ws._cli import program_name

    assert program_name("/usr/local/bin/trio-ws") == "trio-ws"
    assert program_name("/x/trio_ws/__main__.py") == "python -m trio_ws"


# ------------------------------------------------------------------- the supervisor of --workers


async def test_workers_share_the_port() -> None:
    port = free_port()
    async with run_cli("cli_app:router", "--port", str(port), "--workers", "2", serving=2) as server:
        assert server.ports == [port, port]
        assert len(set(server.pids)) == 2
        seen = set()
        async with contextlib.AsyncExitStack() as stack:
            clients = []
            for _ in range(200):  # the kernel spreads connections over the workers
                ws = await stack.enter_async_context(open_websocket("127.0.0.1", port, "/pid"))
                clients.append(ws)
                seen.add(int(await ws.receive_text()))
                if seen == set(server.pids):
                    break
            assert seen == set(server.pids)
            server.process.send_signal(signal.SIGINT)
            for ws in clients:
                with pytest.raises(WebSocketDisconnect) as info:
                    await ws.receive_text()
                assert info.value.code == 1001
        with trio.fail_after(15):
            assert await server.process.wait() == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_worker_killed_is_logged_and_replaced_and_shutdown_reaches_every_worker() -> None:
    port = free_port()
    async with run_cli("cli_app:router", "--port", str(port), "--workers", "2", serving=2) as server:
        victim, survivor = server.pids
        os.kill(victim, signal.SIGKILL)
        await server.read_until(rb"serving \S+ on", 3)
        assert len(server.pids) == 3, server.log
        replacement = server.pids[2]
        assert re.search(
            rf"WARNING trio_ws: worker \d \(pid {victim}\) was killed by SIGKILL; restarting it in [\d.]+s",
            server.log,
        ), server.log
        for _ in range(3):  # the port keeps answering (either worker)
            async with open_websocket("127.0.0.1", port, "/pid") as ws:
                assert int(await ws.receive_text()) in (survivor, replacement)
        server.process.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            assert await server.process.wait() == 0
        log = await server.read_all()
    assert log.count("SIGTERM: shutting down") == 2  # both workers were told
    assert not _alive(survivor)
    assert not _alive(replacement)


async def test_the_supervisor_gives_up_after_too_many_restarts() -> None:
    port = free_port()
    args = ("cli_app:router", "--port", str(port), "--workers", "2", "--max-worker-restarts", "1")
    async with run_cli(*args, serving=2) as server:
        os.kill(server.pids[0], signal.SIGKILL)
        await server.read_until(rb"serving \S+ on", 3)
        os.kill(server.pids[2], signal.SIGKILL)  # the second death within a minute
        with trio.fail_after(15):
            assert await server.process.wait() == 1
        log = await server.read_all()
    assert re.search(
        r"ERROR trio_ws: worker \d \(pid \d+\) was killed by SIGKILL; 1 restarts within 60s", log
    )
    assert "giving up" in log
    assert not _alive(server.pids[1])  # the other worker was stopped too


# --------------------------------------------------------------------- environment, reference


async def test_every_option_can_come_from_the_environment_and_the_command_line_wins() -> None:
    port = free_port()
    env = {"TRIO_WS_APP": "cli_app:router", "TRIO_WS_PORT": str(port), "TRIO_WS_WORKERS": "2"}
    async with run_cli(serving=2, env=env) as server:
        assert server.ports == [port, port]
        server.process.send_signal(signal.SIGINT)
        with trio.fail_after(15):
            assert await server.process.wait() == 0
    async with run_cli("--port", "0", env={**env, "TRIO_WS_WORKERS": "1"}) as server:
        assert server.ports[0] not in (0, port)
    from trio_ws._cli._arguments import build_parser

    parser = build_parser()
    assert {option.env for option in parser.options if option.env} >= {"TRIO_WS_PORT", "TRIO_WS_WORKERS"}


def test_a_worker_gets_exactly_the_options_of_its_supervisor() -> None:
    from trio_ws._cli._arguments import build_parser
    from trio_ws._cli._environment import apply_environment, worker_argv
    from trio_ws._cli._values import CLIError

    def parse(argv: list[str], environ: dict[str, str]) -> argparse.Namespace:
        parser = build_parser()
        apply_environment(parser, environ)
        return parser.parse_args(argv)

    environ = {"TRIO_WS_RELOAD_DIR": "a,b", "TRIO_WS_WS_PING_INTERVAL": "off", "TRIO_WS_ACCESS_LOG": "no"}
    argv = ["app:x", "--port", "9", "--reload-dir", "c", "--ssl-ciphers=-ALL:HIGH", "--no-proxy-headers"]
    args = parse(argv, environ)
    assert args.reload_dir == ["c"]  # the command line replaces the environment's list
    assert (args.ws_ping_interval, args.access_log, args.proxy_headers) == (0.0, False, False)
    again = parse(worker_argv(build_parser(), args), {})
    assert vars(again) == vars(args)
    with pytest.raises(CLIError, match="TRIO_WS_PORT='x'"):
        apply_environment(build_parser(), {"TRIO_WS_PORT": "x"})


def test_the_reference_page_is_the_parsers() -> None:
    from trio_ws._cli._arguments import build_parser
    from trio_ws._cli._reference import BEGIN, END, options_reference

    page = (ROOT / "docs" / "cli.md").read_text()
    _, _, rest = page.partition(BEGIN)
    tables, _, _ = rest.partition(END)
    assert tables.strip() == options_reference().strip(), "run: python -m trio_ws._cli._reference docs/cli.md"
    for option in build_parser().options:
        if option.env is not None:
            assert f"`{option.env}`" in tables
    assert "cli.md" in (ROOT / "mkdocs.yml").read_text()
