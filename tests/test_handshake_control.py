"""Handshake control: the server's HTTP hook, reject() with any status, headers and body, extra
101 headers, the Server header, and the 426 a plain HTTP request gets by default."""

from __future__ import annotations

import h11
import pytest
import trio
import websockets.exceptions
import websockets.sync.client as ws_sync

from trio_ws import HandshakeRejected, HTTPResponse, Request, WebSocket, open_websocket, open_websocket_server
from trio_ws.protocol import error_response
from trio_ws.testing import open_test_client


async def http(port: int, head: str) -> bytes:
    """Send a raw HTTP request; return everything the server sends until it closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(head.encode())
        data = b""
        while chunk := await stream.receive_some():
            data += chunk
    return data


async def hello(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text("websocket")


async def hook(request: Request) -> HTTPResponse | None:
    if request.path == "/health":
        return HTTPResponse(200, "ok\n")
    if request.path == "/old":
        return HTTPResponse.redirect("/new")
    if request.path == "/page":
        return HTTPResponse.html("<h1>chat</h1>")
    if request.path == "/boom":
        raise RuntimeError("the hook failed")
    if request.path == "/private" and request.query_params.get("token") != "s3cret":
        return HTTPResponse(401, "token required\n", [("WWW-Authenticate", "Bearer")])
    return None  # go on with the WebSocket handshake


async def test_the_http_hook_answers_plain_requests_and_lets_upgrades_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with open_websocket_server(hello, "127.0.0.1", 0, process_request=hook) as server:
        health = await http(server.port, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert health.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Content-Length: 3\r\n" in health
        assert health.endswith(b"\r\n\r\nok\n")
        head = await http(server.port, "HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Content-Length: 3\r\n" in head  # what a GET would get...
        assert head.endswith(b"\r\n\r\n")  # ...without the body
        redirect = await http(server.port, "GET /old HTTP/1.1\r\nHost: x\r\n\r\n")
        assert redirect.startswith(b"HTTP/1.1 307 Temporary Redirect\r\n")
        assert b"Location: /new\r\n" in redirect
        page = await http(server.port, "GET /page HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"Content-Type: text/html; charset=utf-8\r\n" in page
        assert page.endswith(b"<h1>chat</h1>")
        boom = await http(server.port, "GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
        assert boom.startswith(b"HTTP/1.1 500 ")
        assert b"the hook failed" not in boom  # never the exception to the peer
        assert "process_request failed" in caplog.text
        # What the hook does not answer: a plain request gets 426, an upgrade goes on.
        plain = await http(server.port, "GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
        assert plain.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
        assert b"Upgrade: websocket\r\n" in plain
        async with open_websocket("127.0.0.1", server.port, "/other") as ws:
            assert await ws.receive_text() == "websocket"
        # The same through a real client and the test client.
        url = f"ws://127.0.0.1:{server.port}"

        def client() -> tuple[int, str, str]:
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                ws_sync.connect(f"{url}/private")
            response = refused.value.response
            with ws_sync.connect(f"{url}/private?token=s3cret") as conn:
                return response.status_code, response.headers["WWW-Authenticate"], str(conn.recv(timeout=5))

        assert await trio.to_thread.run_sync(client) == (401, "Bearer", "websocket")
    with pytest.raises(HandshakeRejected) as info:
        async with open_test_client(hello, "/private", process_request=hook):
            pass  # pragma: no cover
    assert (info.value.status, info.value.body) == (401, b"token required\n")
    async with open_test_client(
        hello, "/private", query_string="token=s3cret", process_request=hook
    ) as test_client:
        assert await test_client.receive_text(timeout=5) == "websocket"


async def test_plain_http_gets_426_by_default() -> None:
    async with open_websocket_server(hello, "127.0.0.1", 0) as server:
        for method in ("GET", "POST", "HEAD"):
            answer = await http(server.port, f"{method} / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 426 Upgrade Required\r\n"), method
            assert b"Upgrade: websocket\r\n" in answer


async def test_the_426_has_one_connection_header_and_the_connection_closes_after() -> None:
    async with open_websocket_server(hello, "127.0.0.1", 0) as server:
        answer = await http(server.port, "GET /chat HTTP/1.1\r\nHost: x\r\n\r\n")  # (read to EOF)
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert [line for line in lines if line.lower().startswith(b"connection:")] == [
        b"Connection: Upgrade, close"
    ]
    assert [line for line in lines if line.lower().startswith(b"upgrade:")] == [b"Upgrade: websocket"]
    # h11, a strict HTTP/1.1 client, reads one answer after which the server closes.
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/chat", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(answer)
    client.receive_data(b"")
    response = client.next_event()
    assert isinstance(response, h11.Response)
    assert response.status_code == 426
    assert [v for k, v in response.headers if k == b"connection"] == [b"Upgrade, close"]
    data = client.next_event()
    assert isinstance(data, h11.Data)
    assert data.data == body
    assert isinstance(client.next_event(), h11.EndOfMessage)
    assert client.their_state is h11.MUST_CLOSE


def test_error_responses_merge_connection_options_into_one_header() -> None:
    def connection_lines(answer: bytes) -> list[bytes]:
        return [line for line in answer.split(b"\r\n") if line.lower().startswith(b"connection:")]

    answer = error_response(400, "no", [("Connection", "keep-alive"), (b"connection", b"Foo")])
    assert connection_lines(answer) == [b"Connection: Foo, close"]
    assert connection_lines(error_response(503)) == [b"Connection: close"]


@pytest.mark.parametrize("status", [400, 401, 404, 409, 429, 451, 500, 503, 599])
async def test_reject_with_any_status_headers_and_body(status: int) -> None:
    async def refuse(ws: WebSocket) -> None:
        await ws.reject(status, body=f"refused with {status}", headers=[("Retry-After", "30")])

    with pytest.raises(HandshakeRejected) as info:
        async with open_test_client(refuse):
            pass  # pragma: no cover
    assert info.value.status == status
    assert info.value.body == f"refused with {status}".encode()
    assert info.value.headers is not None
    assert info.value.headers["retry-after"] == "30"


async def test_reject_seen_by_the_websockets_client() -> None:
    async def refuse(ws: WebSocket) -> None:
        await ws.reject(429, body="slow down", headers=[("Retry-After", "30")])

    async with open_websocket_server(refuse, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.port}/"

        def client() -> tuple[int, str, bytes]:
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                ws_sync.connect(url)
            response = refused.value.response
            return response.status_code, response.headers["Retry-After"], bytes(response.body or b"")

        assert await trio.to_thread.run_sync(client) == (429, "30", b"slow down")


async def test_reject_refuses_a_status_that_is_not_an_error() -> None:
    errors: list[Exception] = []

    async def refuse(ws: WebSocket) -> None:
        try:
            await ws.reject(200)
        except ValueError as exc:
            errors.append(exc)
        await ws.reject(400)

    with pytest.raises(HandshakeRejected):
        async with open_test_client(refuse):
            pass  # pragma: no cover
    assert "4xx or 5xx" in str(errors[0])


async def test_server_header_extra_headers_and_header_injection() -> None:
    seen: list[Exception] = []

    async def handler(ws: WebSocket) -> None:
        try:
            await ws.accept(headers=[("X-Bad", "a\r\nSet-Cookie: evil=1")])
        except ValueError as exc:
            seen.append(exc)
        await ws.accept(headers=[("Set-Cookie", "session=abc; HttpOnly")])
        await ws.send_text("ok")

    for server_header, expected in (("trio_ws", "trio_ws"), ("my-app/2.0", "my-app/2.0"), (None, None)):
        async with open_websocket_server(handler, "127.0.0.1", 0, server_header=server_header) as server:
            url = f"ws://127.0.0.1:{server.port}/"

            def client(url: str) -> tuple[str | None, str]:
                with ws_sync.connect(url) as conn:
                    assert conn.response is not None
                    assert conn.recv(timeout=5) == "ok"
                    return conn.response.headers.get("Server"), conn.response.headers["Set-Cookie"]

            assert await trio.to_thread.run_sync(client, url) == (expected, "session=abc; HttpOnly")
    assert len(seen) == 3
    assert "CR, LF" in str(seen[0])
