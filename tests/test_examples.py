"""The examples, run as a user runs them (one command each, stopped with Ctrl+C) and through the
test client."""

from __future__ import annotations

import importlib.util
import signal
import socket
import subprocess
import sys
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import websockets.exceptions
import websockets.sync.client as ws_sync
from helpers import Chat, free_port

from trio_ws import HandshakeRejected, WebSocket, open_websocket, open_websocket_server
from trio_ws.testing import open_test_client

ROOT = Path(__file__).resolve().parent.parent


async def test_echo_example_serves_and_sigint_closes_clients_with_1001() -> None:
    port = free_port()
    proc = await trio.lowlevel.open_process(
        [sys.executable, str(ROOT / "examples" / "echo.py"), "--port", str(port)],
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        line = b""
        with trio.fail_after(20):
            while b"\n" not in line:
                line += await proc.stderr.receive_some()
        assert f"listening on ws://127.0.0.1:{port} ".encode() in line

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
        rest = b""
        while chunk := await proc.stderr.receive_some():
            rest += chunk
        assert b"Traceback" not in rest, rest.decode()
    finally:
        if proc.returncode is None:  # pragma: no cover - only when the test failed
            proc.kill()
            await proc.wait()
        if proc.stderr is not None:
            await proc.stderr.aclose()


@pytest.mark.parametrize("name", ["chat.py", "echo.py", "auth.py", "json_api.py"])
async def test_examples_say_a_port_is_in_use_in_one_line(name: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = await trio.run_process(
            [sys.executable, str(ROOT / "examples" / name), "--port", str(port)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 1
    # (json_api.py runs the command line, which names the program as it was run)
    program = name if name == "json_api.py" else "trio_ws"
    assert result.stderr.decode().splitlines() == [f"{program}: error: port {port} is in use on 127.0.0.1"]
    assert result.stdout == b""


async def test_client_example_says_it_cannot_connect_in_one_line() -> None:
    url = f"ws://127.0.0.1:{free_port()}/"  # nobody listens there
    result = await trio.run_process(
        [sys.executable, str(ROOT / "examples" / "client.py"), url, "hello"],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == [f"cannot connect to {url}: Connection refused"]
    assert result.stdout == b""


async def test_client_example_stops_on_ctrl_c_in_one_line() -> None:
    connected = trio.Event()

    async def silent(ws: WebSocket) -> None:
        await ws.accept()
        connected.set()
        await ws.receive()  # (the client's close, when it is interrupted)

    async with open_websocket_server(silent, "127.0.0.1", 0) as server:
        proc = await trio.lowlevel.open_process(
            [sys.executable, str(ROOT / "examples" / "client.py"), f"ws://127.0.0.1:{server.port}/", "hi"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stderr is not None
        with trio.fail_after(20):
            await connected.wait()  # it waits for an answer that never comes
            proc.send_signal(signal.SIGINT)
            err = b""
            while chunk := await proc.stderr.receive_some():
                err += chunk
            assert await proc.wait() == 130
    assert err.decode().splitlines() == ["interrupted"]


@asynccontextmanager
async def example(name: str, *args: str) -> AsyncIterator[int]:
    """Run ``examples/<name>`` on a free port until its first line is printed; yield the port."""
    port = free_port()
    proc = await trio.lowlevel.open_process(
        [sys.executable, str(ROOT / "examples" / name), "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        seen = b""
        with trio.fail_after(20):
            while f":{port}".encode() not in seen:  # the line that says where it serves
                chunk = await proc.stdout.receive_some()
                assert chunk, f"{name} exited: {seen!r}"
                seen += chunk
        yield port
        proc.send_signal(signal.SIGINT)
        with trio.fail_after(15):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:  # pragma: no cover - only when the test failed
            proc.kill()
            await proc.wait()
        if proc.stdout is not None:
            await proc.stdout.aclose()


async def test_chat_example_rooms_and_page() -> None:
    async with example("chat.py") as port:
        page = await http_get(port, "/")
        assert page.startswith(b"HTTP/1.1 200 OK")
        assert b"new WebSocket(" in page
        async with (
            open_websocket("127.0.0.1", port, "/ws/a?name=ann") as ann_ws,
            open_websocket("127.0.0.1", port, "/ws/a?name=bob") as bob_ws,
            open_websocket("127.0.0.1", port, "/ws/b?name=cy") as cy_ws,
        ):
            ann, bob, cy = Chat(ann_ws), Chat(bob_ws), Chat(cy_ws)
            await ann.until(lambda: ("join", "bob") in ann.presence)
            await bob.until(lambda: bob.who is not None and bob.first is not None)
            assert bob.who == ["ann", "bob"]  # who is in the room, as the page lists them
            assert bob.first is not None and (bob.first["offset"], bob.first["recovered"]) == (0, False)
            await ann.ws.send_text("hello room a")
            assert await bob.next() == {"from": "ann", "text": "hello room a"}
            assert await ann.next() == {"from": "ann", "text": "hello room a"}
            assert ann.last is not None and ann.last[0] == 1  # its offset in the room's history
            await cy.ws.send_text("only b")
            assert await cy.next() == {"from": "cy", "text": "only b"}
            await bob.ws.send_text("second")
            assert await ann.next() == {"from": "bob", "text": "second"}  # nothing from room b
            assert ann.ws.extensions  # compression negotiated
        assert ("leave", "bob") not in ann.presence  # (it left with ann, after the block)


async def test_chat_example_shows_a_new_page_the_history_and_a_reconnecting_one_what_it_missed() -> None:
    async with example("chat.py") as port, open_websocket("127.0.0.1", port, "/ws/a?name=bob") as bob_ws:
        bob = Chat(bob_ws)
        async with open_websocket("127.0.0.1", port, "/ws/a?name=ann") as ann_ws:
            ann = Chat(ann_ws)
            for text in ("one", "two"):
                await bob.ws.send_text(text)
                assert (await ann.next())["text"] == text
            assert ann.last is not None
            offset, epoch = ann.last
        await bob.until(lambda: ("leave", "ann") in bob.presence)
        for text in ("three", "four", "five"):  # while ann is away
            await bob.ws.send_text(text)
        position = f"&offset={offset}&epoch={urllib.parse.quote(epoch)}"
        async with open_websocket("127.0.0.1", port, f"/ws/a?name=ann{position}") as ann_ws:
            ann = Chat(ann_ws)
            assert [(await ann.next())["text"] for _ in range(3)] == ["three", "four", "five"]
            assert ann.first is not None and ann.first["recovered"] is True
            await bob.ws.send_text("live")
            assert (await ann.next())["text"] == "live"  # straight after: nothing twice
        async with open_websocket("127.0.0.1", port, "/ws/a?name=dan") as dan_ws:  # a new page
            dan = Chat(dan_ws)
            texts = [(await dan.next())["text"] for _ in range(6)]
            assert texts == ["one", "two", "three", "four", "five", "live"]
            assert dan.first is not None and dan.first["recovered"] is False


async def test_chat_example_refuses_a_message_too_long_with_a_word_to_its_sender() -> None:
    async with (
        example("chat.py") as port,
        open_websocket("127.0.0.1", port, "/ws/a?name=ann") as ann_ws,
        open_websocket("127.0.0.1", port, "/ws/a?name=bob") as bob_ws,
    ):
        ann, bob = Chat(ann_ws), Chat(bob_ws)
        await ann.until(lambda: ("join", "bob") in ann.presence)
        await ann.ws.send_text("é" * 2001)
        await ann.until(lambda: bool(ann.other))
        refusal = ann.other[0]
        assert refusal["from"] == "server"
        assert refusal["error"] == "too_long"
        assert "2,001 characters" in refusal["text"]
        assert "2,000" in refusal["text"]
        await ann.ws.send_text("é" * 2000)  # at the limit: whole, not cut
        assert await bob.next() == {"from": "ann", "text": "é" * 2000}  # nothing before it
        assert await ann.next() == {"from": "ann", "text": "é" * 2000}
        assert bob.other == []


async def test_chat_example_takes_any_room_name() -> None:
    async with (
        example("chat.py") as port,
        open_websocket("127.0.0.1", port, "/ws/a%2Fb?name=ann") as ann_ws,
        open_websocket("127.0.0.1", port, "/ws/a?name=bob") as bob_ws,
        open_websocket("127.0.0.1", port, "/ws/caf%C3%A9%20%3F%23%25?name=cy") as cy_ws,
    ):
        rooms = []
        for ws in (ann_ws, bob_ws, cy_ws):
            while "presence" not in (message := await ws.receive_json()):
                pass
            rooms.append(message["room"])
        assert rooms == ["a/b", "a", "café ?#%"]
        ann, bob = Chat(ann_ws), Chat(bob_ws)
        await bob.ws.send_text("in a")
        assert await bob.next() == {"from": "bob", "text": "in a"}
        await ann.ws.send_text("in a/b")
        assert await ann.next() == {"from": "ann", "text": "in a/b"}  # nothing from room a


async def test_chat_example_serves_its_icon() -> None:
    async with example("chat.py") as port:
        page = await http_get(port, "/")
        assert b'rel="icon" href="/favicon.svg"' in page
        for path in ("/favicon.ico", "/favicon.svg"):
            icon = await http_get(port, path)
            assert icon.startswith(b"HTTP/1.1 200 OK"), icon[:40]
            assert b"Content-Type: image/svg+xml" in icon
            assert icon.rstrip().endswith(b"</svg>")


async def http_get(port: int, path: str) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := await stream.receive_some():
            data += chunk
    return data


async def test_client_example_against_the_json_api_example() -> None:
    async with example("json_api.py") as port:
        requests = [
            '{"id": 1, "method": "deposit", "params": {"amount": 12.5}}',
            '{"id": 2, "method": "balance"}',
        ]
        result = await trio.run_process(
            [
                sys.executable,
                str(ROOT / "examples" / "client.py"),
                f"ws://127.0.0.1:{port}/accounts/7",
                *requests,
            ],
            capture_stdout=True,
            capture_stderr=True,
        )
        assert result.stdout.decode().splitlines() == ['{"id":1,"result":12.5}', '{"id":2,"result":12.5}']
        refused = await trio.run_process(
            [
                sys.executable,
                str(ROOT / "examples" / "client.py"),
                f"ws://127.0.0.1:{port}/accounts/abc",
                "x",
            ],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert refused.returncode == 1
        assert refused.stderr.decode().startswith("refused: 404")


async def test_json_api_example_through_the_test_client() -> None:
    json_api = load_example("json_api")
    async with open_test_client(json_api.router, "/accounts/3") as client:
        await client.send_json({"id": 1, "method": "deposit", "params": {"amount": 2}})
        assert await client.receive_json(timeout=5) == {"id": 1, "result": 2}
        await client.send_json({"id": 2, "method": "deposit", "params": {"amount": -1}})
        assert await client.receive_json(timeout=5) == {"id": 2, "error": "amount must be a positive number"}
        await client.send_json({"id": 3, "method": "nope"})
        assert await client.receive_json(timeout=5) == {"id": 3, "error": "no method 'nope'"}
        await client.send_json(["not", "a", "request"])
        assert await client.wait_closed(timeout=5) == 1003
    async with open_test_client(json_api.router, "/rates/eur/42") as client:
        assert await client.receive_json(timeout=5) == {"currency": "EUR", "day": 42, "rate": 1.042}
    with pytest.raises(HandshakeRejected) as info:
        async with open_test_client(json_api.router, "/rates/eur/today"):
            pass  # pragma: no cover
    assert info.value.status == 404


async def test_auth_example() -> None:
    auth = load_example("auth")
    expectations = [
        ("/me", {}, "", 401),
        ("/me", {"Authorization": "Bearer alice-token"}, "", 101),
        ("/me", {}, "token=alice-token", 101),
        ("/me", {"Authorization": "Bearer wrong"}, "", 401),
        ("/admin", {}, "token=alice-token", 403),
        ("/admin", {}, "token=admin-token", 101),
        ("/me", {"Origin": "https://evil.test"}, "token=alice-token", 403),
        ("/me", {"Origin": "https://app.example.com"}, "token=alice-token", 101),
    ]
    for path, headers, query, status in expectations:
        if status == 101:
            async with open_test_client(auth.router, path, headers=headers, query_string=query) as client:
                assert "hello" in await client.receive_json(timeout=5) or path == "/admin"
        else:
            with pytest.raises(HandshakeRejected) as info:
                async with open_test_client(auth.router, path, headers=headers, query_string=query):
                    pass  # pragma: no cover
            assert info.value.status == status, (path, headers, query)


def load_example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_auth_example_runs_with_one_command() -> None:
    async with example("auth.py") as port:
        async with open_websocket("127.0.0.1", port, "/me?token=alice-token") as ws:
            assert await ws.receive_json() == {"hello": "alice"}
        with pytest.raises(HandshakeRejected) as info:
            async with open_websocket("127.0.0.1", port, "/admin?token=alice-token"):
                pass  # pragma: no cover
        assert info.value.status == 403
