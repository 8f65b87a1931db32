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


async def served_after_failures(monkeypatch: pytest.MonkeyPatch, code: int, failures: int) -> int:
    """Serve one connection while the first ``failures`` accepts fail with ``code``; return how
    many failures were left (0: all were met)."""
    left = failures

    class Flaky(socket.socket):
        def accept(self) -> tuple[socket.socket, Any]:
            nonlocal left
            if left:
                left -= 1
                raise OSError(code, os.strerror(code))
            return super().accept()

    monkeypatch.setattr(
        accept_module, "socket", types.SimpleNamespace(socket=Flaky, SOCK_STREAM=socket.SOCK_STREAM)
    )
    async with open_websocket_server(echo_once, "127.0.0.1", 0, ping_interval=None) as server:
        client = socket.create_connection(("127.0.0.1", server.port))
        head = await trio.to_thread.run_sync(upgrade, client)
        assert head.startswith(b"HTTP/1.1 101")
        client.close()
    return left


@posix
@pytest.mark.parametrize(("waiting", "least", "most"), [(50, 1, 2), (accept_module.BATCH + 10, 2, 3)])
async def test_waiting_connections_are_accepted_in_batches(waiting: int, least: int, most: int) -> None:
    """Connections already waiting in the listen queue: the accept loop takes up to BATCH of them
    in one task step (trio's ``SocketListener.accept`` takes a step for each), the rest in a step
    of their own after a checkpoint (maybe one more: a wake-up that found the queue empty); each is
    then served."""
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
        clients = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(waiting)]
        await trio.testing.wait_all_tasks_blocked()
        trio.lowlevel.remove_instrument(count)
        assert least <= steps <= most, steps
        assert len(server.connections) == 0  # accepted; their requests are still to come
        heads = await trio.to_thread.run_sync(lambda: [upgrade(c) for c in clients])
        assert all(head.startswith(b"HTTP/1.1 101") for head in heads)
        assert len(server.connections) == waiting
        for c in clients:
            c.close()


@posix
async def test_a_full_process_on_accept_is_logged_retried_and_the_connection_served(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """EMFILE while accepting on plain TCP: one line in the log, a pause, and the connection that
    waited is served after it; the server goes on."""

    caplog.set_level(logging.ERROR, "trio_ws")
    assert await served_after_failures(monkeypatch, errno.EMFILE, 3) == 0
    assert [r.getMessage() for r in caplog.records].count(
        "accept failed ([Errno 24] Too many open files); retrying in 0.1s"
    ) == 3


@posix
async def test_an_unexpected_accept_error_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    """An error that is neither a full process or kernel nor one connection's (here EIO) is not
    hidden: it ends the server with it."""

    class Broken(socket.socket):
        def accept(self) -> tuple[socket.socket, Any]:
            raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(
        accept_module, "socket", types.SimpleNamespace(socket=Broken, SOCK_STREAM=socket.SOCK_STREAM)
    )
    with pytest.RaisesGroup(pytest.RaisesExc(OSError, match="Input/output"), flatten_subgroups=True):
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


@posix
@pytest.mark.parametrize("code", [errno.ECONNABORTED, errno.EPERM, errno.ECONNRESET])
async def test_an_error_of_one_incoming_connection_skips_it_quietly(
    code: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A connection reset or aborted before it was accepted, or refused by a firewall rule (EPERM
    on Linux): that connection is skipped, nothing is logged, the next one is served."""

    caplog.set_level(logging.DEBUG, "trio_ws")
    assert await served_after_failures(monkeypatch, code, 5) == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def tcp_listener() -> trio.SocketListener:
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    assert isinstance(listener, trio.SocketListener)
    return listener


@posix
async def test_a_listener_closed_by_its_owner_ends_the_loop() -> None:
    """Closed while the loop waits: it returns, and its own descriptor no longer listens."""
    listener = await tcp_listener()
    port = listener.socket.getsockname()[1]
    served: list[trio.abc.Stream] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_module.accept_forever, listener, served.append)
        await trio.testing.wait_all_tasks_blocked()
        await listener.aclose()
    assert served == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port)).close()


@posix
async def test_a_listener_closed_during_a_pause_ends_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A full process (EMFILE every time), and the owner closes the listener meanwhile: the loop
    ends after its pause instead of retrying on its own descriptor forever."""

    class Full(socket.socket):
        def accept(self) -> tuple[socket.socket, Any]:
            raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(
        accept_module, "socket", types.SimpleNamespace(socket=Full, SOCK_STREAM=socket.SOCK_STREAM)
    )
    listener = await tcp_listener()
    client = socket.create_connection(listener.socket.getsockname()[:2])
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept_module.accept_forever, listener, lambda stream: None)
            await trio.testing.wait_all_tasks_blocked()  # in its pause
            await listener.aclose()
    client.close()


@posix
async def test_when_the_listening_socket_cannot_be_duplicated_the_listener_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No descriptor to spare for the short path: the listener's own accept serves instead."""

    def no_dup(fd: int) -> int:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(os, "dup", no_dup)  # (for the test's few lines: nothing else dups here)
    listener = await tcp_listener()
    served: list[trio.abc.Stream] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_module.accept_forever, listener, served.append)
        client = socket.create_connection(listener.socket.getsockname()[:2])
        with trio.fail_after(5):
            while not served:
                await trio.testing.wait_all_tasks_blocked()
        await listener.aclose()
    assert isinstance(served[0], trio.SocketStream)
    await served[0].aclose()
    client.close()
