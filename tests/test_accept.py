"""Accepting connections (trio_ws.server._accept): a burst of waiting connections is taken in one
task step on plain TCP, a full process is logged and retried, and every connection is served."""

from __future__ import annotations

import errno
import logging
import os
import socket
import types
from typing import Any

import pytest
import trio
import trio.testing

from trio_ws import WebSocket, open_websocket_server
from trio_ws.protocol import build_request
from trio_ws.server import _accept as accept_module

posix = pytest.mark.skipif(os.name != "posix", reason="the short path is POSIX's")


async def echo_once(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text(await ws.receive_text())


def upgrade(sock: socket.socket) -> bytes:
    """The 101 head a blocking client socket gets (the test's trio loop must be running the server:
    call from a thread)."""
    sock.sendall(build_request("x", "/")[0])
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    return head


@posix
async def test_a_burst_of_waiting_connections_is_accepted_in_one_task_step() -> None:
    """Fifty connections already waiting in the listen queue: the accept loop takes them in one
    step (trio's ``SocketListener.accept`` takes a step for each); each is then served."""
    steps = 0

    class Count(trio.abc.Instrument):
        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            nonlocal steps
            steps += task.name.endswith("_accept_loop")

    async with open_websocket_server(echo_once, "127.0.0.1", 0, ping_interval=None) as server:
        await trio.testing.wait_all_tasks_blocked()
        count = Count()
        trio.lowlevel.add_instrument(count)
        # Connected by the kernel (the listen queue) before the server runs again.
        clients = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(50)]
        await trio.testing.wait_all_tasks_blocked()
        trio.lowlevel.remove_instrument(count)
        assert steps <= 2, steps  # (one, and maybe a wake-up that found the queue empty)
        assert len(server.connections) == 0  # accepted; their requests are still to come
        heads = await trio.to_thread.run_sync(lambda: [upgrade(c) for c in clients])
        assert all(head.startswith(b"HTTP/1.1 101") for head in heads)
        assert len(server.connections) == 50
        for c in clients:
            c.close()


@posix
async def test_more_waiting_connections_than_a_batch_are_all_served() -> None:
    """A batch is at most BATCH connections; the rest are taken after a checkpoint."""
    async with open_websocket_server(echo_once, "127.0.0.1", 0, ping_interval=None) as server:
        await trio.testing.wait_all_tasks_blocked()
        clients = [
            socket.create_connection(("127.0.0.1", server.port)) for _ in range(accept_module.BATCH + 10)
        ]
        heads = await trio.to_thread.run_sync(lambda: [upgrade(c) for c in clients])
        assert all(head.startswith(b"HTTP/1.1 101") for head in heads)
        for c in clients:
            c.close()


@posix
async def test_a_full_process_on_accept_is_logged_retried_and_the_connection_served(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """EMFILE while accepting on plain TCP: one line in the log, a pause, and the connection that
    waited is served after it; the server goes on."""

    class Flaky(socket.socket):
        failures = 3

        def accept(self) -> tuple[socket.socket, Any]:
            if Flaky.failures:
                Flaky.failures -= 1
                raise OSError(errno.EMFILE, "Too many open files")
            return super().accept()

    monkeypatch.setattr(
        accept_module, "socket", types.SimpleNamespace(socket=Flaky, SOCK_STREAM=socket.SOCK_STREAM)
    )
    caplog.set_level(logging.ERROR, "trio_ws")
    async with open_websocket_server(echo_once, "127.0.0.1", 0, ping_interval=None) as server:
        client = socket.create_connection(("127.0.0.1", server.port))
        head = await trio.to_thread.run_sync(upgrade, client)
        assert head.startswith(b"HTTP/1.1 101")
        client.close()
    assert Flaky.failures == 0
    assert [r.getMessage() for r in caplog.records].count(
        "accept failed ([Errno 24] Too many open files); retrying in 0.1s"
    ) == 3


@posix
async def test_an_unexpected_accept_error_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    """An error that is not a full process or kernel (here EPERM) is not hidden: it ends the
    server with it."""

    class Broken(socket.socket):
        def accept(self) -> tuple[socket.socket, Any]:
            raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(
        accept_module, "socket", types.SimpleNamespace(socket=Broken, SOCK_STREAM=socket.SOCK_STREAM)
    )
    with pytest.RaisesGroup(PermissionError, flatten_subgroups=True):
        async with open_websocket_server(echo_once, "127.0.0.1", 0, ping_interval=None) as server:
            socket.create_connection(("127.0.0.1", server.port)).close()
            await trio.sleep_forever()


@posix
async def test_closing_the_server_ends_the_accept_loop_and_closes_the_listening_socket() -> None:
    async with open_websocket_server(echo_once, "127.0.0.1", 0, ping_interval=None) as server:
        port = server.port
        await trio.testing.wait_all_tasks_blocked()
    with pytest.raises(ConnectionRefusedError):  # (the loop's own descriptor is closed too)
        socket.create_connection(("127.0.0.1", port)).close()
