"""``python -m trio_ws --asgi module:app``, run as a user runs it: a Starlette application's pages
and WebSockets, its lifespan, SIGTERM with 1001, HTTPS and WSS, a startup failure, the options of
``--asgi``."""

from __future__ import annotations

import inspect
import signal
import ssl
from pathlib import Path

import httpx
import pytest
import trio
import trustme
from cli_process import run_cli, run_cli_once
from helpers import free_port

from trio_ws import WebSocketDisconnect, open_websocket
from trio_ws._cli._arguments import ASGI_DEFAULTS
from trio_ws.asgi import open_asgi_server


async def test_serves_pages_and_websockets_and_sigterm_closes_with_1001_then_the_lifespan_ends() -> None:
    async with run_cli("--asgi", "asgi_app:app", "--port", "0", "--root-path", "/api") as server:
        port = server.ports[0]
        async with httpx.AsyncClient() as client:
            page = (await client.get(f"http://127.0.0.1:{port}/page")).json()
        assert page == {"pid": server.pids[0], "path": "/api/page", "root_path": "/api"}
        async with open_websocket("127.0.0.1", port, "/echo") as ws:
            assert int(await ws.receive_text()) == server.pids[0]  # the lifespan state
            await ws.send_text("hello")
            assert await ws.receive_text() == "hello"
            server.process.send_signal(signal.SIGTERM)
            with pytest.raises(WebSocketDisconnect) as info:
                await ws.receive_text()
            assert info.value.code == 1001
        with trio.fail_after(15):
            assert await server.process.wait() == 0
        log = await server.read_all()
    assert log.index("lifespan: startup") < log.index(f"serving asgi_app:app on http://127.0.0.1:{port} ")
    assert log.index("SIGTERM: shutting down") < log.index("lifespan: shutdown") < log.index("stopped")
    assert "/page 200" in log  # the access line of the page
    assert "/echo 101 close=1001" in log


async def test_workers_each_run_the_lifespan_and_share_the_port() -> None:
    port = free_port()
    async with run_cli("--asgi", "asgi_app:app", "--port", str(port), "--workers", "2", serving=2) as server:
        assert server.ports == [port, port]
        seen = set()
        async with httpx.AsyncClient() as client:
            for _ in range(200):  # new connections: the kernel spreads them over the workers
                response = await client.get(f"http://127.0.0.1:{port}/page", headers={"Connection": "close"})
                seen.add(response.json()["pid"])  # each worker's own lifespan state
                if seen == set(server.pids):
                    break
        assert seen == set(server.pids)
        server.process.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            assert await server.process.wait() == 0
        log = await server.read_all()
    assert log.count("lifespan: startup") == log.count("lifespan: shutdown") == 2


async def test_a_startup_failure_is_one_line_and_exit_status_3() -> None:
    result = await run_cli_once("--asgi", "asgi_app:failing", "--port", "0")
    stderr = result.stderr.decode()
    assert result.returncode == 3, stderr
    assert "error: application startup failed: ConnectionRefusedError: the database is not there" in stderr
    assert "serving" not in stderr


async def test_https_and_wss_with_certificate_files(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    tls = ("--ssl-certfile", str(cert_file), "--ssl-keyfile", str(key_file))
    async with run_cli("--asgi", "asgi_app:app", "--port", "0", *tls) as server:
        port = server.ports[0]
        assert f"on https://127.0.0.1:{port} " in server.log
        async with httpx.AsyncClient(verify=context) as client:
            page = (await client.get(f"https://127.0.0.1:{port}/page")).json()
        assert page["pid"] == server.pids[0]
        async with open_websocket("127.0.0.1", port, "/echo", ssl_context=context) as ws:
            assert int(await ws.receive_text()) == server.pids[0]
            await ws.send_text("secure")
            assert await ws.receive_text() == "secure"


async def test_a_target_without_a_colon_asks_for_module_app() -> None:
    result = await run_cli_once("--asgi", "asgi_app", "--port", "0")
    assert result.returncode == 2
    assert "expected module:app, got 'asgi_app'" in result.stderr.decode()


async def test_the_application_must_be_callable() -> None:
    result = await run_cli_once("--asgi", "asgi_app:lifespan.__name__", "--port", "0")
    assert result.returncode == 2
    assert "is not a handler: str is not callable" in result.stderr.decode()


def test_the_options_defaults_are_open_asgi_servers() -> None:
    parameters = inspect.signature(open_asgi_server).parameters
    assert {name: parameters[name].default for name in ASGI_DEFAULTS} == ASGI_DEFAULTS
