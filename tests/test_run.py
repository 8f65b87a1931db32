"""``trio_ws.run`` as a script runs it (a real process, stopped with a signal), the tutorial's first
snippet as written, and what a script prints by default when a handler fails (and when nothing
went wrong)."""

from __future__ import annotations

import errno
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import websockets.exceptions
import websockets.sync.client as ws_sync
from helpers import free_port

from trio_ws import WebSocket, WebSocketDisconnect, open_websocket, open_websocket_server
from trio_ws.app import listen_error, server_urls
from trio_ws.server import open_listeners

ROOT = Path(__file__).resolve().parent.parent
ECHO = """
import sys
import trio_ws

async def echo(ws):
    await ws.accept()
    async for text in ws.iter_text():
        await ws.send_text(text)

trio_ws.run(echo, sys.argv[1], int(sys.argv[2]))
"""
LIFESPAN = """
import sys
from contextlib import asynccontextmanager
import trio_ws

async def wait(ws):
    await ws.accept()
    async for _ in ws.iter_text():
        pass

@asynccontextmanager
async def lifespan(server):
    print("up", server.port, flush=True)
    yield
    print("down with", len(server.connections), "connections open", flush=True)

trio_ws.run(wait, "127.0.0.1", int(sys.argv[1]), lifespan=lifespan)
"""

#: An application that configures logging, to stdout.
LOG_TO_STDOUT = (
    "import logging, sys\nlogging.basicConfig(level={level}, stream=sys.stdout, format={format!r})\n"
)


class Script:
    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.out = b""
        self.err = b""

    async def read_until(self, pattern: bytes, stream: str = "err") -> None:
        """Read stdout or stderr until ``pattern`` appears (failing if the process ends first)."""
        source = self.process.stderr if stream == "err" else self.process.stdout
        assert source is not None
        with trio.fail_after(20):
            while pattern not in (self.err if stream == "err" else self.out):
                chunk = await source.receive_some()
                assert chunk, (self.out + self.err).decode()
                if stream == "err":
                    self.err += chunk
                else:
                    self.out += chunk

    async def finish(self, within: float = 15) -> int:
        """Wait (at most ``within`` seconds) for the exit; read the rest of both streams."""
        with trio.fail_after(within):
            code = await self.process.wait()
        for name in ("out", "err"):
            source = self.process.stdout if name == "out" else self.process.stderr
            assert source is not None
            while chunk := await source.receive_some():
                setattr(self, name, getattr(self, name) + chunk)
        return code


@asynccontextmanager
async def script(*argv: str) -> AsyncIterator[Script]:
    process = await trio.lowlevel.open_process(
        [sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        yield Script(process)
    finally:
        if process.returncode is None:  # pragma: no cover - only when the test failed
            process.kill()
            await process.wait()
        for stream in (process.stdout, process.stderr):
            assert stream is not None
            await stream.aclose()


def echo_and_close_code(port: int, process: trio.Process, signum: int) -> tuple[str, int | None]:
    """In a thread: a message through the server, then ``signum`` to it; the close code seen."""
    with ws_sync.connect(f"ws://127.0.0.1:{port}/") as conn:
        conn.send("hello")
        reply = str(conn.recv(timeout=5))
        process.send_signal(signum)
        try:
            conn.recv(timeout=10)
        except websockets.exceptions.ConnectionClosed as exc:
            return reply, exc.rcvd.code if exc.rcvd else None
    raise AssertionError("no close after the signal")  # pragma: no cover


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_run_says_where_it_listens_and_a_signal_closes_with_1001_without_a_traceback(
    signum: int,
) -> None:
    port = free_port()
    async with script("-c", ECHO, "127.0.0.1", str(port)) as s:
        await s.read_until(f"listening on ws://127.0.0.1:{port} (Ctrl+C to stop)".encode())
        reply = await trio.to_thread.run_sync(echo_and_close_code, port, s.process, signum)
        assert reply == ("hello", 1001)
        assert await s.finish() == 0
    err = s.err.decode()
    assert "Traceback" not in err and "Exception" not in err, err
    assert f"{signal.Signals(signum).name}: shutting down" in err
    assert err.rstrip().endswith("trio_ws: stopped")
    assert s.out == b""


def first_snippet(page: str, heading: str) -> str:
    """The first Python block under ``heading`` of ``page``, as a reader copies it."""
    text = (ROOT / page).read_text()
    section = text[text.index(heading) :]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    return code[1]


@pytest.mark.parametrize(
    ("page", "heading"),
    [("docs/tutorial.md", "## 2. A handler"), ("README.md", "## Use"), ("docs/install.md", "## Serve")],
)
async def test_the_first_snippets_stop_on_ctrl_c_without_a_traceback(page: str, heading: str) -> None:
    code = first_snippet(page, heading)
    assert "8000" in code
    port = free_port()
    async with script("-c", code.replace("8000", str(port))) as s:
        await s.read_until(f"ws://127.0.0.1:{port}".encode())  # it says where it listens
        reply = await trio.to_thread.run_sync(echo_and_close_code, port, s.process, signal.SIGINT)
        assert reply == ("hello", 1001)
        assert await s.finish() == 0
    assert b"Traceback" not in s.err, s.err.decode()
    assert len(s.err.decode().splitlines()) == 3  # listening, shutting down, stopped


async def test_a_second_signal_stops_at_once() -> None:
    port = free_port()
    async with script("-c", ECHO, "127.0.0.1", str(port)) as s:
        await s.read_until(b"listening on")
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        # A client that completes the handshake and then never answers the close frame.
        await stream.send_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert (await stream.receive_some()).startswith(b"HTTP/1.1 101")
        s.process.send_signal(signal.SIGINT)
        await s.read_until(b"shutting down")
        start = time.monotonic()
        s.process.send_signal(signal.SIGINT)
        assert await s.finish(within=5) == 1
        assert time.monotonic() - start < 5  # not the 10 s close timeout
        await stream.aclose()
    assert b"SIGINT again: stopping at once" in s.err
    assert b"Traceback" not in s.err


async def test_a_port_in_use_is_one_line_and_exit_status_1() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = await trio.run_process(
            [sys.executable, "-c", ECHO, "127.0.0.1", str(port)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == [f"trio_ws: error: port {port} is in use on 127.0.0.1"]


async def test_an_address_that_is_not_ours_is_one_line_and_exit_status_1() -> None:
    result = await trio.run_process(
        [sys.executable, "-c", ECHO, "192.0.2.1", "8000"],  # TEST-NET-1: no interface has it
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("trio_ws: error: cannot listen on 192.0.2.1:8000: ")


async def test_lifespan_runs_while_the_server_listens_and_ends_after_the_last_connection() -> None:
    port = free_port()
    async with script("-c", LIFESPAN, str(port)) as s:
        await s.read_until(f"up {port}".encode(), stream="out")
        async with open_websocket("127.0.0.1", port) as ws:  # listening while the lifespan runs
            await ws.send_text("hi")
            s.process.send_signal(signal.SIGTERM)
            with pytest.raises(WebSocketDisconnect) as info:
                await ws.receive()
            assert info.value.code == 1001
        assert await s.finish() == 0
    assert s.out.decode().splitlines() == [f"up {port}", "down with 0 connections open"]


async def test_run_logs_its_lines_when_the_application_shows_info() -> None:
    configured = LOG_TO_STDOUT.format(level="logging.INFO", format="LOG %(message)s")
    port = free_port()
    async with script("-c", configured + ECHO, "127.0.0.1", str(port)) as s:
        await s.read_until(f"LOG listening on ws://127.0.0.1:{port}".encode(), stream="out")
        s.process.send_signal(signal.SIGINT)
        assert await s.finish() == 0
    assert b"LOG stopped" in s.out
    assert s.err == b""  # nothing printed beside the application's logging


async def accept(ws: WebSocket) -> None:
    await ws.accept()


async def test_server_urls_put_ipv6_addresses_in_brackets() -> None:
    try:
        listeners = await open_listeners("::1", 0)
    except OSError:  # pragma: no cover - a machine without IPv6
        pytest.skip("no IPv6 loopback here")
    async with open_websocket_server(accept, listeners=listeners) as server:
        assert server_urls(server.listeners) == [f"ws://[::1]:{server.port}"]
    async with open_websocket_server(accept, "127.0.0.1", 0) as server:
        assert server_urls(server.listeners) == [f"ws://127.0.0.1:{server.port}"]


def test_listen_error_in_words() -> None:
    in_use = OSError(errno.EADDRINUSE, "Address already in use")
    assert listen_error(in_use, "127.0.0.1", 8000) == "port 8000 is in use on 127.0.0.1"
    assert listen_error(in_use, None, 8000) == "port 8000 is in use on every interface"
    other = OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
    assert listen_error(other, "::1", 80) == "cannot listen on [::1]:80: Cannot assign requested address"


# ----------------------------------------------------------- what a script prints by default

CRASH = """
import trio
from trio_ws import open_websocket, open_websocket_server

async def crash(ws):
    await ws.accept()
    raise RuntimeError("boom")

async def main():
    async with open_websocket_server(crash, "127.0.0.1", 0) as server:
        async with open_websocket("127.0.0.1", server.port, "/crash") as ws:
            try:
                await ws.receive()
            except Exception as exc:
                assert exc.code == 1011, exc
trio.run(main)
"""


async def test_a_handler_error_is_printed_with_its_traceback_when_logging_is_not_configured() -> None:
    result = await trio.run_process([sys.executable, "-c", CRASH], capture_stdout=True, capture_stderr=True)
    assert result.stdout == b""
    err = result.stderr.decode()
    assert err.startswith("handler for /crash failed\nTraceback (most recent call last):\n"), err
    assert err.rstrip().endswith("RuntimeError: boom")


async def test_a_handler_error_goes_to_the_applications_logging_only() -> None:
    configured = LOG_TO_STDOUT.format(level="logging.WARNING", format="LOG %(levelname)s %(message)s")
    result = await trio.run_process(
        [sys.executable, "-c", configured + CRASH], capture_stdout=True, capture_stderr=True
    )
    assert result.stdout.decode().startswith("LOG ERROR handler for /crash failed\nTraceback")
    assert result.stderr == b""


ORDINARY = """
import trio
from trio_ws import Router, HandshakeRejected, WebSocketDisconnect, open_websocket, open_websocket_server

router = Router()

@router.websocket("/echo")
async def echo(ws):
    await ws.accept()
    async for text in ws.iter_text():
        await ws.send_text(text)

@router.websocket("/private")
async def private(ws):
    await ws.reject(401)

async def main():
    async with open_websocket_server(router, "127.0.0.1", 0) as server:
        async with open_websocket("127.0.0.1", server.port, "/echo") as ws:  # closes normally
            await ws.send_text("hi")
            assert await ws.receive() == "hi"
        for path, status in (("/nowhere", 403), ("/private", 401)):  # refused handshakes
            try:
                async with open_websocket("127.0.0.1", server.port, path):
                    raise AssertionError("accepted")
            except HandshakeRejected as exc:
                assert exc.status == status, exc
        # A client that goes away without a closing handshake, while its handler waits and sends.
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        await stream.send_all(
            b"GET /echo HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n"
        )
        assert (await stream.receive_some()).startswith(b"HTTP/1.1 101")
        await trio.aclose_forcefully(stream)
        # Plain HTTP where a WebSocket is expected, and a request that is not HTTP at all.
        for data in (b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n", b"hello\\r\\n\\r\\n"):
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            await stream.send_all(data)
            assert (await stream.receive_some()).startswith(b"HTTP/1.1 4")
            await stream.aclose()
trio.run(main)
"""


async def test_ordinary_events_print_nothing_by_default() -> None:
    result = await trio.run_process(
        [sys.executable, "-c", ORDINARY], capture_stdout=True, capture_stderr=True
    )
    assert result.stdout == b""
    assert result.stderr == b""
