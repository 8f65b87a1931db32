"""The examples run as a user runs them: the README's demo server, stopped with Ctrl+C."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import trio
import websockets.exceptions
import websockets.sync.client as ws_sync

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_echo_example_serves_and_sigint_closes_clients_with_1001() -> None:
    port = free_port()
    proc = await trio.lowlevel.open_process(
        [sys.executable, str(ROOT / "examples" / "echo.py"), "--port", str(port)],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = b""
        with trio.fail_after(20):
            while b"\n" not in line:
                line += await proc.stdout.receive_some()
        assert f"ws://127.0.0.1:{port}/".encode() in line

        def client() -> tuple[str, int | None]:
            with ws_sync.connect(f"ws://127.0.0.1:{port}/") as conn:
                conn.send("hello")
                reply = str(conn.recv(timeout=5))
                proc.send_signal(signal.SIGINT)
                try:
                    conn.recv(timeout=10)
                except websockets.exceptions.ConnectionClosed as exc:
                    return reply, exc.rcvd.code if exc.rcvd else None
            raise AssertionError("no close after SIGINT")  # pragma: no cover

        assert await trio.to_thread.run_sync(client) == ("hello", 1001)
        with trio.fail_after(10):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:  # pragma: no cover - only when the test failed
            proc.kill()
            await proc.wait()
        if proc.stdout is not None:
            await proc.stdout.aclose()
