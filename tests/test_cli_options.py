"""The command line's options, each through a real subprocess: where to listen (--uds, --fd,
--backlog), proxies (--proxy-headers, --forwarded-allow-ips, --root-path), the app (--app-dir,
--factory, --http-hook), WebSocket settings and limits, logging, and --reload."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import time
from pathlib import Path

import pytest
import trio
import trustme
from cli_process import HANDSHAKE, ROOT, RawClient, run_cli, run_cli_once
from helpers import free_port

from trio_ws import HandshakeRejected, WebSocketDisconnect, WebSocketOptions, open_websocket
from trio_ws.client import connect_websocket, run_client


async def _stop(server_process: trio.Process) -> None:
    server_process.send_signal(signal.SIGINT)
    with trio.fail_after(15):
        assert await server_process.wait() == 0


async def test_a_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    path.touch()  # (a stale file that is not a socket is refused)
    result = await run_cli_once("cli_app:router", "--uds", str(path))
    assert result.returncode == 1
    assert "exists and is not a socket" in result.stderr.decode()
    path.unlink()
    async with run_cli("cli_app:router", "--uds", str(path)) as server:
        assert f"on ws+unix:{path} (pid" in server.log
        stream = await trio.open_unix_socket(str(path))
        handshake = await connect_websocket(stream, "localhost", "/pid", WebSocketOptions())
        async with run_client(handshake) as ws:
            assert int(await ws.receive_text()) == server.pids[0]
        await _stop(server.process)
    assert not path.exists()  # removed on the way out


async def test_workers_on_a_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    async with run_cli("cli_app:router", "--uds", str(path), "--workers", "2", serving=2) as server:
        stream = await trio.open_unix_socket(str(path))
        handshake = await connect_websocket(stream, "localhost", "/pid", WebSocketOptions())
        async with run_client(handshake) as ws:
            assert int(await ws.receive_text()) in server.pids
        await _stop(server.process)
    assert not path.exists()


async def test_an_inherited_socket() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        fd = str(sock.fileno())
        async with run_cli("cli_app:router", "--fd", fd, pass_fds=[sock.fileno()]) as server:
            assert server.ports == [port]
            async with open_websocket("127.0.0.1", port, "/pid") as ws:
                assert int(await ws.receive_text()) == server.pids[0]
    result = await run_cli_once("cli_app:router", "--fd", "0")  # stdin: not a listening socket
    assert result.returncode == 2
    assert "--fd 0 is not a socket" in result.stderr.decode()


async def test_backlog() -> None:
    async with run_cli("cli_app:router", "--port", "0", "--backlog", "7") as server:
        port = server.ports[0]
        listing = (
            await trio.run_process(["ss", "-Hltn", f"sport = :{port}"], capture_stdout=True)
        ).stdout.split()
        assert listing[2] == b"7", listing  # State Recv-Q Send-Q (the backlog) Local...


async def _client_address(port: int, *headers: tuple[str, str]) -> str:
    async with open_websocket("127.0.0.1", port, "/client", headers=headers) as ws:
        return await ws.receive_text()


async def test_proxy_headers_are_honoured_only_from_forwarded_allow_ips() -> None:
    forwarded = ("X-Forwarded-For", "203.0.113.7")
    async with run_cli("cli_app:router", "--port", "0") as server:  # default: 127.0.0.1 is trusted
        assert await _client_address(server.ports[0], forwarded) == "203.0.113.7"
        assert await _client_address(server.ports[0]) == "127.0.0.1"
    async with run_cli("cli_app:router", "--port", "0", "--forwarded-allow-ips", "10.0.0.0/8") as server:
        assert await _client_address(server.ports[0], forwarded) == "127.0.0.1"
    async with run_cli("cli_app:router", "--port", "0", "--forwarded-allow-ips", "*") as server:
        assert await _client_address(server.ports[0], forwarded) == "203.0.113.7"
    async with run_cli("cli_app:router", "--port", "0", "--no-proxy-headers") as server:
        assert await _client_address(server.ports[0], forwarded) == "127.0.0.1"


async def test_root_path_is_taken_off_request_paths() -> None:
    async with run_cli("cli_app:router", "--port", "0", "--root-path", "/api/") as server:
        port = server.ports[0]
        async with open_websocket("127.0.0.1", port, "/api/path?x=1") as ws:
            assert await ws.receive_text() == "/path"
        async with open_websocket("127.0.0.1", port, "/path") as ws:  # (a proxy took it off already)
            assert await ws.receive_text() == "/path"
        with pytest.raises(HandshakeRejected) as info:
            async with open_websocket("127.0.0.1", port, "/apipath"):
                pass
        assert info.value.status == 403  # not under /api, and no such route


async def test_app_dir_and_factory(tmp_path: Path) -> None:
    (tmp_path / "elsewhere.py").write_text(
        "from trio_ws import WebSocket\n\n"
        "def make():\n"
        "    async def hello(ws: WebSocket) -> None:\n"
        "        await ws.accept()\n"
        "        await ws.send_text('made')\n"
        "    return hello\n"
    )
    args = ("elsewhere:make", "--app-dir", str(tmp_path), "--factory", "--port", "0")
    async with run_cli(*args) as server, open_websocket("127.0.0.1", server.ports[0], "/") as ws:
        assert await ws.receive_text() == "made"
    async with (
        run_cli("cli_app:make_router", "--factory", "--port", "0") as server,
        open_websocket("127.0.0.1", server.ports[0], "/pid") as ws,
    ):
        assert int(await ws.receive_text()) == server.pids[0]
    result = await run_cli_once("cli_app:make_nothing", "--factory")
    assert result.returncode == 2
    assert "the factory 'cli_app:make_nothing' returned int, not a handler" in result.stderr.decode()


async def _http_get(port: int, path: str) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := await stream.receive_some():
            data += chunk
        return data


async def test_http_hook_answers_health_checks() -> None:
    async with run_cli(
        "cli_app:router", "--port", "0", "--http-hook", "cli_app:health", "--root-path", "/api"
    ) as server:
        port = server.ports[0]
        answer = await _http_get(port, "/api/health")
        assert answer.startswith(b"HTTP/1.1 200")
        assert answer.endswith(b"ok /health\n")  # the hook sees the path without the root path
        assert (await _http_get(port, "/other")).startswith(b"HTTP/1.1 426")
        async with open_websocket("127.0.0.1", port, "/api/pid") as ws:
            assert int(await ws.receive_text()) == server.pids[0]
    result = await run_cli_once("cli_app:router", "--http-hook", "cli_app:not_async")
    assert result.returncode == 2
    assert "--http-hook cli_app:not_async is a function, not an async function" in result.stderr.decode()


async def test_metrics_beside_the_http_hook_scraped_during_traffic() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    async with run_cli(
        "cli_app:router", "--port", "0", "--http-hook", "cli_app:health", "--metrics", "/metrics"
    ) as server:
        port = server.ports[0]
        assert (await _http_get(port, "/health")).startswith(b"HTTP/1.1 200")  # the hook still answers
        async with open_websocket("127.0.0.1", port, "/pid") as ws:
            await ws.receive_text()
            answer = await _http_get(port, "/metrics")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
        }
        assert samples[("trio_ws_connections_open", ())] == 1
        assert samples[("trio_ws_handshakes_total", (("status", "101"),))] == 1
    for bad, message in (("metrics", "takes a path such as /metrics"),):
        result = await run_cli_once("cli_app:router", "--metrics", bad)
        assert result.returncode == 2
        assert message in result.stderr.decode()


async def test_ws_max_size_and_limit_concurrency() -> None:
    async with run_cli(
        "cli_app:router", "--port", "0", "--ws-max-size", "10", "--limit-concurrency", "1"
    ) as server:
        port = server.ports[0]
        async with open_websocket("127.0.0.1", port, "/pid") as ws:
            await ws.receive_text()
            with pytest.raises(HandshakeRejected) as info:
                async with open_websocket("127.0.0.1", port, "/pid"):
                    pass
            assert info.value.status == 503  # one connection at a time
            await ws.send_text("0123456789")
            assert await ws.receive_text() == "0123456789"
            await ws.send_text("0123456789A")
            with pytest.raises(WebSocketDisconnect) as closed:
                await ws.receive_text()
            assert closed.value.code == 1009


async def test_keepalive_pings_and_their_timeout() -> None:
    args = ("cli_app:router", "--port", "0", "--ws-ping-interval", "0.2", "--ws-ping-timeout", "0.3")
    async with run_cli(*args) as server:
        client = await RawClient.connect(server.ports[0])  # answers no ping
        opcodes = []
        with trio.fail_after(10):
            while True:
                opcode, payload = await client.frame()
                opcodes.append(opcode)
                if opcode == 0x8:
                    break
        assert 0x9 in opcodes  # a ping came
        assert int.from_bytes(payload[:2], "big") == 1011  # and no pong: closed
        await client.stream.aclose()


async def test_timeout_graceful_shutdown_bounds_the_wait_for_clients() -> None:
    async with run_cli("cli_app:router", "--port", "0", "--timeout-graceful-shutdown", "0.5") as server:
        client = await RawClient.connect(server.ports[0])  # never answers the close frame
        start = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        with trio.fail_after(8):
            assert await server.process.wait() == 0
        assert time.monotonic() - start < 5  # not the default 10 s
        await client.stream.aclose()


async def test_no_access_log_and_a_json_log_config(tmp_path: Path) -> None:
    config = tmp_path / "logging.json"
    config.write_text(
        json.dumps(
            {
                "formatters": {"plain": {"format": "CUSTOM %(levelname)s %(name)s %(message)s"}},
                "handlers": {"err": {"class": "logging.StreamHandler", "formatter": "plain"}},
                "loggers": {"trio_ws": {"handlers": ["err"], "level": "INFO"}},
            }
        )
    )
    async with run_cli(
        "cli_app:router", "--port", "0", "--log-config", str(config), "--no-access-log"
    ) as server:
        assert re.search(r"CUSTOM INFO trio_ws serving cli_app:router on ws://", server.log), server.log
        async with open_websocket("127.0.0.1", server.ports[0], "/pid") as ws:
            await ws.receive_text()
        await _stop(server.process)
        log = await server.read_all()
    assert "CUSTOM INFO trio_ws stopped" in log
    assert "trio_ws.access" not in log


async def test_a_yaml_log_config_and_without_pyyaml(tmp_path: Path) -> None:
    config = tmp_path / "logging.yaml"
    config.write_text(
        "formatters: {plain: {format: 'YAML %(levelname)s %(message)s'}}\n"
        "handlers: {err: {class: logging.StreamHandler, formatter: plain}}\n"
        "loggers: {trio_ws: {handlers: [err], level: INFO}}\n"
    )
    async with run_cli("cli_app:router", "--port", "0", "--log-config", str(config)) as server:
        assert "YAML INFO serving cli_app:router" in server.log
    no_yaml = tmp_path / "no_yaml"
    no_yaml.mkdir()
    (no_yaml / "yaml.py").write_text("raise ImportError('no PyYAML here')\n")
    path = os.pathsep.join([str(no_yaml), str(ROOT)])
    result = await run_cli_once("cli_app:router", "--log-config", str(config), env={"PYTHONPATH": path})
    assert result.returncode == 2
    assert "is YAML, which needs PyYAML (pip install pyyaml)" in result.stderr.decode()
    ini = tmp_path / "logging.ini"  # any other name: a fileConfig file
    ini.write_text("[loggers]\nkeys=root\n")
    result = await run_cli_once("cli_app:router", "--log-config", str(ini))
    assert result.returncode == 2
    assert f"--log-config {ini}: not a usable logging INI file" in result.stderr.decode()


async def test_reload_serves_the_changed_code(tmp_path: Path) -> None:
    app = tmp_path / "reloaded.py"
    source = (
        "from trio_ws import WebSocket\n\nasync def handler(ws: WebSocket) -> None:\n    await ws.accept()\n"
    )
    app.write_text(source + "    await ws.send_text('one')\n")
    args = ("reloaded:handler", "--app-dir", str(tmp_path), "--reload", "--port", "0")
    async with run_cli(*args, cwd=tmp_path) as server:
        port = server.ports[0]
        async with open_websocket("127.0.0.1", port, "/") as ws:
            assert await ws.receive_text() == "one"
        # (Another size: a .pyc written in the same second as the first version is checked by size.)
        app.write_text(source + "    await ws.send_text('second')\n")
        await server.read_until(rb"serving \S+ on", 2)
        assert "reloading" in server.log
        assert server.ports[1] == port  # the same socket, made once by the supervisor
        async with open_websocket("127.0.0.1", port, "/") as ws:
            assert await ws.receive_text() == "second"
        await _stop(server.process)


async def _raw_handshake(port: int, extra: bytes = b"") -> bytes:
    """The server's answer to a handshake with ``extra`` header lines."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        request = HANDSHAKE.replace(b"\r\n\r\n", b"\r\n" + extra + b"\r\n")
        await stream.send_all(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = await stream.receive_some()
            if not chunk:
                break
            answer += chunk
        return answer.partition(b"\r\n\r\n")[0].lower()


async def test_handshake_settings() -> None:
    args = ["--no-ws-per-message-deflate", "--subprotocol", "chat", "--no-server-header"]
    args += ["--limit-per-client", "1", "--max-request-size", "1024", "--ws-open-timeout", "0.5"]
    async with run_cli("cli_app:router", "--port", "0", *args) as server:
        port = server.ports[0]
        offer = b"Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Protocol: other, chat\r\n"
        head = await _raw_handshake(port, offer)
        assert head.startswith(b"http/1.1 101")
        assert b"sec-websocket-protocol: chat" in head
        assert b"sec-websocket-extensions" not in head  # no compression
        assert b"\r\nserver:" not in head
        assert (await _raw_handshake(port, b"X-Big: " + b"x" * 2000 + b"\r\n")).startswith(b"http/1.1 431")
        async with open_websocket("127.0.0.1", port, "/pid") as ws:
            await ws.receive_text()
            with pytest.raises(HandshakeRejected) as info:
                async with open_websocket("127.0.0.1", port, "/pid"):
                    pass
            assert info.value.status == 429  # one connection per client address
        idle = await trio.open_tcp_stream("127.0.0.1", port)  # sends nothing: dropped after 0.5 s
        with trio.fail_after(5):
            assert await idle.receive_some() == b""
        await idle.aclose()


async def test_tls_client_certificates_and_an_encrypted_key(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    encrypted = serialization.BestAvailableEncryption(b"sesame")
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encrypted)
    )
    ca.cert_pem.write_to_path(str(ca_file))
    tls = ("--ssl-certfile", str(cert_file), "--ssl-keyfile", str(key_file))
    result = await run_cli_once("cli_app:router", *tls)  # no password: an error, never a prompt
    assert result.returncode == 2
    assert "is encrypted: give its password with --ssl-keyfile-password" in result.stderr.decode()
    result = await run_cli_once("cli_app:router", *tls, "--ssl-keyfile-password", "wrong")
    assert "wrong --ssl-keyfile-password" in result.stderr.decode()
    required = (
        "--ssl-keyfile-password",
        "sesame",
        "--ssl-ca-certs",
        str(ca_file),
        "--ssl-cert-reqs",
        "required",
    )
    port = free_port()
    async with run_cli(
        "cli_app:router", "--port", str(port), "--workers", "2", *tls, *required, serving=2
    ) as server:
        for pid in server.pids:  # the workers get the password through their environment
            assert b"sesame" not in await trio.Path(f"/proc/{pid}/cmdline").read_bytes()
        context = ssl.create_default_context()
        ca.configure_trust(context)
        with pytest.raises((ssl.SSLError, trio.BrokenResourceError, HandshakeRejected)):
            async with open_websocket("127.0.0.1", port, "/pid", ssl_context=context) as ws:
                await ws.receive_text()  # (TLS 1.3 reports the missing certificate after the handshake)
        ca.issue_cert("client@example.com").configure_cert(context)
        async with open_websocket("127.0.0.1", port, "/pid", ssl_context=context) as ws:
            assert int(await ws.receive_text()) in server.pids


def test_reload_filter() -> None:
    from trio_ws._cli._reloader import ReloadFilter

    default = ReloadFilter(["*.py"], [".*", "*~", "*.py[cod]"])
    assert default(None, "/app/chat.py")
    assert not default(None, "/app/chat.txt")
    assert not default(None, "/app/.chat.py")
    assert not default(None, "/app/__pycache__/chat.py")  # (watchfiles' own list of directories)
    templates = ReloadFilter(["*.py", "*.html"], ["secret*"])
    assert templates(None, "/app/page.html")
    assert not templates(None, "/app/secret.py")
