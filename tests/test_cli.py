"""The command line, run as a user runs it: ``python -m trio_ws module:handler``."""

from __future__ import annotations

import contextlib
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trustme
from helpers import free_port

from trio_ws import WebSocketDisconnect, open_websocket

APPS = Path(__file__).resolve().parent / "apps"
SERVING = re.compile(rb"serving \S+ on (wss?)://[^:]+:(\d+) \(pid (\d+)\)")


class Server:
    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.output = b""
        self.ports: list[int] = []
        self.pids: list[int] = []

    async def read_until(self, pattern: bytes | re.Pattern[bytes], count: int = 1) -> None:
        """Read the server's stderr until ``pattern`` appeared ``count`` times (or it exited)."""
        assert self.process.stderr is not None
        with trio.fail_after(30):
            while len(re.findall(pattern, self.output)) < count:
                chunk = await self.process.stderr.receive_some()
                if not chunk:
                    return
                self.output += chunk
        for m in SERVING.finditer(self.output):
            if int(m[3]) not in self.pids:
                self.ports.append(int(m[2]))
                self.pids.append(int(m[3]))


@asynccontextmanager
async def run_cli(*args: str, serving: int = 1) -> AsyncIterator[Server]:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_ws", *args], cwd=APPS, stderr=subprocess.PIPE
    )
    server = Server(process)
    try:
        if serving:
            await server.read_until(SERVING, serving)
            assert server.pids, server.output.decode()
        yield server
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        assert process.stderr is not None
        await process.stderr.aclose()


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
    log = server.output.decode()
    assert "SIGINT: shutting down" in log
    # One access line per connection: client, path, outcome, duration, messages/bytes each way.
    assert re.search(r"trio_ws\.access: 127\.0\.0\.1:\d+ /pid 101 close=1001 [\d.]+s in=1/5B out=2/\d+B", log)


async def test_a_second_signal_stops_at_once() -> None:
    async with run_cli("cli_app:router", "--port", "0") as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.ports[0])
        # A client that completes the handshake and then never answers the close frame.
        await stream.send_all(
            b"GET /pid HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert (await stream.receive_some()).startswith(b"HTTP/1.1 101")
        server.process.send_signal(signal.SIGTERM)
        await server.read_until(b"shutting down")
        start = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        with trio.fail_after(5):
            assert await server.process.wait() == 1
        assert time.monotonic() - start < 5  # not the 10 s close timeout
        await server.read_until(b"stopping at once")
        await stream.aclose()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no_such_module:handler"], "cannot import module 'no_such_module': no such module"),
        (["cli_app:nothing"], "module 'cli_app' has no attribute 'nothing'"),
        (["cli_app"], "expected module:handler"),
        (["cli_app:not_a_handler"], "is not a handler: int is not callable"),
        (["cli_app:router", "--ssl-certfile", "/nonexistent/cert.pem"], "certificate file not found"),
        (["cli_app:router", "--workers", "2", "--port", "0"], "--workers needs a fixed --port"),
    ],
)
async def test_clear_errors(args: list[str], message: str) -> None:
    result = await trio.run_process(
        [sys.executable, "-m", "trio_ws", *args], cwd=APPS, capture_stderr=True, check=False
    )
    assert result.returncode == 2
    assert message in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


async def test_port_in_use() -> None:
    holder = trio.socket.socket()
    await holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    with holder:
        for extra in ([], ["--workers", "2"]):
            result = await trio.run_process(
                [sys.executable, "-m", "trio_ws", "cli_app:router", "--port", str(port), *extra],
                cwd=APPS,
                capture_stderr=True,
                check=False,
            )
            assert result.returncode == 1
            assert f"port {port} is in use on 127.0.0.1" in result.stderr.decode()


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


async def test_wss_with_a_certificate_file(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    async with run_cli(
        "cli_app:router", "--port", "0", "--ssl-certfile", str(cert_file), "--ssl-keyfile", str(key_file)
    ) as server:
        assert b"wss://" in server.output
        async with open_websocket("127.0.0.1", server.ports[0], "/pid", ssl_context=client_context) as ws:
            assert int(await ws.receive_text()) == server.pids[0]
