"""wss://: TLS on the server and the client, against our client and the websockets library's."""

from __future__ import annotations

import ssl

import pytest
import trio
import websockets.sync.client as ws_sync

from trio_ws import WebSocket, open_websocket_server, open_websocket_url


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    async for text in ws.iter_text():
        await ws.send_text(f"{ws.client is not None}:{text}")


async def test_wss_with_our_client(server_context: ssl.SSLContext, client_context: ssl.SSLContext) -> None:
    async with open_websocket_server(echo, "127.0.0.1", 0, ssl_context=server_context) as server:
        url = f"wss://localhost:{server.port}/secure"
        async with open_websocket_url(url, ssl_context=client_context) as ws:
            await ws.send_text("hi")
            assert await ws.receive_text() == "True:hi"
        assert ws.close_code == 1000


async def test_wss_with_websockets_client(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async with open_websocket_server(echo, "127.0.0.1", 0, ssl_context=server_context) as server:
        url = f"wss://localhost:{server.port}/"

        def client() -> str:
            with ws_sync.connect(url, ssl=client_context) as conn:
                conn.send("tls")
                return str(conn.recv(timeout=5))

        assert await trio.to_thread.run_sync(client) == "True:tls"


async def test_client_refuses_an_untrusted_certificate(server_context: ssl.SSLContext) -> None:
    async with open_websocket_server(echo, "127.0.0.1", 0, ssl_context=server_context) as server:
        with pytest.raises(ssl.SSLCertVerificationError):
            async with open_websocket_url(f"wss://localhost:{server.port}/"):
                pass  # pragma: no cover
        # The server keeps serving after the failed TLS handshake.
        assert server.connections == set()


async def test_tls_handshake_counts_against_open_timeout(server_context: ssl.SSLContext) -> None:
    async with open_websocket_server(
        echo, "127.0.0.1", 0, ssl_context=server_context, open_timeout=0.3
    ) as server:
        start = trio.current_time()  # before connecting: the server's timer starts at accept
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        with trio.fail_after(5):
            # Say nothing: no TLS ClientHello. The server must drop us at open_timeout.
            assert await stream.receive_some() == b""
        assert 0.3 <= trio.current_time() - start < 2
        await stream.aclose()
