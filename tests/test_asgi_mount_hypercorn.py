"""A trio_ws router mounted in Starlette (tests/apps/asgi_mount_app.py) and served by hypercorn's
trio worker in a real process, driven by the websockets library's client."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets.exceptions
import websockets.sync.client as ws_sync
from cli_process import APPS, cli_env
from helpers import free_port
from websockets.typing import Subprotocol


class Hypercorn:
    """A running ``hypercorn --worker-class trio asgi_mount_app:app`` and its log file."""

    def __init__(self, log: Path, *options: str) -> None:
        self.port = free_port()
        self.log_path = log
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hypercorn",
                "--worker-class",
                "trio",
                "--bind",
                f"127.0.0.1:{self.port}",
                *options,
                "asgi_mount_app:app",
            ],
            cwd=APPS,
            env=cli_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        deadline = time.monotonic() + 30
        while True:  # ready once it accepts a connection
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"hypercorn did not start:\n{self.output}") from None
            try:  # (waiting for it to exit is the pause between attempts)
                self.process.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
            raise AssertionError(f"hypercorn exited with {self.process.returncode}:\n{self.output}")

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


@pytest.fixture(scope="module")
def hypercorn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hypercorn]:
    server = Hypercorn(tmp_path_factory.mktemp("hypercorn") / "log.txt")
    try:
        yield server
    finally:
        server.stop()


def test_routes_and_typed_path_parameters_under_the_mount(hypercorn: Hypercorn) -> None:
    with ws_sync.connect(f"{hypercorn.url}/n/42?x=1", open_timeout=5) as ws:
        info = json.loads(ws.recv(timeout=5))
    assert info["n"] == 42
    assert info["type"] == "int"
    assert (info["path"], info["route_path"], info["root_path"]) == ("/ws/n/42", "/n/42", "/ws")
    assert info["client"][0] == "127.0.0.1"
    assert info["scheme"] == "ws"
    assert info["query"] == {"x": "1"}
    for path in ("/n/forty-two", "/nothing-here"):  # no route: refused as the native server does
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            ws_sync.connect(f"{hypercorn.url}{path}", open_timeout=5)
        assert refused.value.response.status_code == 403


def test_echo_with_the_subprotocol_and_extra_headers(hypercorn: Hypercorn) -> None:
    payload = bytes(range(256)) * 2500  # 640 KB
    with ws_sync.connect(f"{hypercorn.url}/echo", subprotocols=[Subprotocol("chat")], open_timeout=5) as ws:
        assert ws.subprotocol == "chat"
        assert ws.response is not None
        assert ws.response.headers["x-mounted"] == "yes"
        assert ws.response.headers.get_all("server") == ["hypercorn-h11"]  # the ASGI server's only
        ws.send("héllo")
        assert ws.recv(timeout=5) == "héllo"
        ws.send(payload)
        assert ws.recv(timeout=5) == payload


def test_an_auth_refusal_reaches_the_client_as_its_http_status(hypercorn: Hypercorn) -> None:
    # hypercorn offers the websocket.http.response extension: the refusal is an HTTP response.
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        ws_sync.connect(f"{hypercorn.url}/private", open_timeout=5)
    response = refused.value.response
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert bytes(response.body) == b"Authentication required"
    headers = {"Authorization": "Bearer s3cret"}
    with ws_sync.connect(f"{hypercorn.url}/private", additional_headers=headers, open_timeout=5) as ws:
        assert ws.recv(timeout=5) == "hello alice"


def test_a_server_close_reaches_the_client_with_its_code_and_reason(hypercorn: Hypercorn) -> None:
    with ws_sync.connect(f"{hypercorn.url}/close", open_timeout=5) as ws:
        ws.send("close, please")
        with pytest.raises(websockets.exceptions.ConnectionClosedError):
            ws.recv(timeout=5)
        assert ws.close_code == 4002
        assert ws.close_reason == "bye now"


def test_a_client_close_reaches_the_handler_as_hypercorn_reports_it(hypercorn: Hypercorn) -> None:
    with ws_sync.connect(f"{hypercorn.url}/watch", open_timeout=5) as watcher:
        assert watcher.recv(timeout=5) == "watching"
        with ws_sync.connect(f"{hypercorn.url}/report", open_timeout=5) as ws:
            ws.send("ping")
            assert ws.recv(timeout=5) == "ping"
            ws.close(4003, "client bye")
        # hypercorn answers the client's close itself and tells the application websocket.disconnect
        # with 1006 whatever code the client sent: the handler sees what the ASGI server says.
        assert watcher.recv(timeout=5) == "1006"


def test_a_failing_handler_closes_with_1011_and_no_traceback_reaches_hypercorn(
    hypercorn: Hypercorn,
) -> None:
    with ws_sync.connect(f"{hypercorn.url}/boom", open_timeout=5) as ws:
        ws.send("fail now")
        with pytest.raises(websockets.exceptions.ConnectionClosedError):
            ws.recv(timeout=5)
        assert ws.close_code == 1011
        assert ws.close_reason == ""  # the exception's text stays in the log
    with ws_sync.connect(f"{hypercorn.url}/echo", open_timeout=5) as ws:  # the others go on
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"
    output = hypercorn.output
    assert "handler for /ws/boom failed" in output
    assert "Error in ASGI Framework" not in output


def test_the_http_route_and_plain_http_to_the_mount(hypercorn: Hypercorn) -> None:
    with ws_sync.connect(f"{hypercorn.url}/echo", open_timeout=5):
        home = httpx.get(f"http://127.0.0.1:{hypercorn.port}/", timeout=5)
    assert (home.status_code, home.text) == (200, "home, 1 websockets")
    plain = httpx.get(f"http://127.0.0.1:{hypercorn.port}/ws/echo", timeout=5)
    assert plain.status_code == 426
    assert plain.headers["upgrade"] == "websocket"


def test_shutting_hypercorn_down_closes_connections_with_1001(tmp_path: Path) -> None:
    server = Hypercorn(tmp_path / "log.txt", "--graceful-timeout", "1")
    try:
        with ws_sync.connect(f"{server.url}/echo", open_timeout=5) as ws:
            ws.send("hi")
            assert ws.recv(timeout=5) == "hi"
            server.process.send_signal(signal.SIGTERM)
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                ws.recv(timeout=10)
            assert ws.close_code == 1001
    finally:
        code = server.stop()
    assert code == 0, server.output
    assert "Traceback" not in server.output
