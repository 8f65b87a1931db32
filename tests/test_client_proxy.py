"""proxy=: through an HTTP CONNECT proxy (a small one written here) and real SOCKS4/SOCKS5 proxies
(pproxy, run as a process), ws:// and wss://, with credentials; a refusal raises ProxyError, an
unreachable proxy OSError, a bad proxy URL ValueError before connecting."""

from __future__ import annotations

import base64
import functools
import re
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
import trio

from trio_ws import ProxyError, WebSocket, open_websocket, open_websocket_server, open_websocket_url
from trio_ws.client import ProxyURL


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    async for text in ws.iter_text():
        await ws.send_text(f"{ws.url.scheme}:{text}")


class ConnectProxy:
    """An HTTP CONNECT proxy: 407 without the expected credentials, 502 when the target cannot be
    reached, else 200 and the bytes piped both ways."""

    def __init__(self, credentials: str | None = None) -> None:
        self.credentials = credentials
        self.requests: list[str] = []
        self.port = 0

    async def handle(self, client: trio.SocketStream) -> None:
        async with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = await client.receive_some()
                if not chunk:
                    return
                head += chunk
            lines = head.decode("latin-1").split("\r\n")
            self.requests.append(lines[0])
            headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:] if line)}
            if self.credentials is not None:
                expected = "Basic " + base64.b64encode(self.credentials.encode()).decode()
                if headers.get("proxy-authorization") != expected:
                    await client.send_all(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                        b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n'
                    )
                    return
            host, _, port = lines[0].split(" ")[1].rpartition(":")
            try:
                upstream = await trio.open_tcp_stream(host.strip("[]"), int(port))
            except OSError:
                await client.send_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            async with upstream:
                await client.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(pipe, client, upstream, nursery.cancel_scope)
                    nursery.start_soon(pipe, upstream, client, nursery.cancel_scope)


async def pipe(source: trio.abc.Stream, sink: trio.abc.Stream, scope: trio.CancelScope) -> None:
    try:
        while data := await source.receive_some():
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        scope.cancel()  # one side is done: so is the tunnel


@asynccontextmanager
async def connect_proxy(credentials: str | None = None) -> AsyncIterator[ConnectProxy]:
    proxy = ConnectProxy(credentials)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, proxy.handle, 0, host="127.0.0.1"))
        proxy.port = listeners[0].socket.getsockname()[1]
        yield proxy
        nursery.cancel_scope.cancel()


@pytest.fixture(scope="module")
def socks() -> Iterator[dict[str, int]]:
    """pproxy's SOCKS servers in a process of their own: their ports, by name."""
    listen = {
        "socks5": "socks5://127.0.0.1:0",
        "socks5-auth": "socks5://127.0.0.1:0#alice:s3cret",
        "socks4": "socks4://127.0.0.1:0",
    }
    # pproxy on asyncio's own loop: with uvloop installed (a benchmark's extra) it would take that,
    # and uvloop 0.23 fails in pproxy.
    start = "import runpy, sys; sys.modules['uvloop'] = None; runpy.run_module('pproxy', run_name='__main__')"
    command = [sys.executable, "-u", "-c", start, "--auth=-1"]  # (no "authenticated" addresses)
    for uri in listen.values():
        command += ["-l", uri]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        ports = []
        for line in process.stdout:  # "Serving on ipv4 127.0.0.1:PORT by socks5", one per -l
            found = re.search(r"Serving on \S+ 127\.0\.0\.1:(\d+) by", line)
            if found:
                ports.append(int(found[1]))
            if len(ports) == len(listen):
                break
        assert len(ports) == len(listen), "pproxy did not start"
        yield dict(zip(listen, ports, strict=True))
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()




async def test_through_an_http_connect_proxy() -> None:
    async with (
        open_websocket_server(echo, "127.0.0.1", 0) as server,
        connect_proxy() as proxy,
    ):
        url = f"ws://127.0.0.1:{server.port}/chat"
        async with open_websocket_url(url, proxy=f"http://127.0.0.1:{proxy.port}") as ws:
            await ws.send_text("hi")
            assert await ws.receive_text() == "ws:hi"
            assert ws.response is not None and ws.response.status == 101
        assert ws.close_code == 1000
        assert proxy.requests == [f"CONNECT 127.0.0.1:{server.port} HTTP/1.1"]


async def test_http_proxy_credentials_come_from_the_url_and_a_refusal_is_a_proxy_error() -> None:
    async with (
        open_websocket_server(echo, "127.0.0.1", 0) as server,
        connect_proxy(credentials="alice:p@ss word") as proxy,
    ):
        good = f"http://alice:p%40ss%20word@127.0.0.1:{proxy.port}"
        async with open_websocket("127.0.0.1", server.port, proxy=good) as ws:
            await ws.send_text("authenticated")
            assert await ws.receive_text() == "ws:authenticated"
        for bad in (f"http://127.0.0.1:{proxy.port}", f"http://alice:wrong@127.0.0.1:{proxy.port}"):
            with pytest.raises(ProxyError, match="407") as info:
                async with open_websocket("127.0.0.1", server.port, proxy=bad):
                    pass  # pragma: no cover
            assert info.value.status == 407
            assert "wrong" not in str(info.value)


async def test_an_http_proxy_that_cannot_reach_the_target_answers_502() -> None:
    async with connect_proxy() as proxy:
        with pytest.raises(ProxyError) as info:
            async with open_websocket("127.0.0.1", 1, proxy=f"http://127.0.0.1:{proxy.port}"):
                pass  # pragma: no cover
        assert info.value.status == 502


@pytest.mark.parametrize("proxy_kind", ["http", "socks5h"])
async def test_wss_through_a_proxy(
    proxy_kind: str,
    socks: dict[str, int],
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    async with (
        open_websocket_server(echo, "127.0.0.1", 0, ssl_context=server_context) as server,
        connect_proxy() as http_proxy,
    ):
        port = http_proxy.port if proxy_kind == "http" else socks["socks5"]
        url = f"wss://localhost:{server.port}/secure"
        proxy = f"{proxy_kind}://127.0.0.1:{port}"
        async with open_websocket_url(url, ssl_context=client_context, proxy=proxy) as ws:
            assert isinstance(ws.stream, trio.SSLStream)  # TLS to the target, inside the tunnel
            await ws.send_text("tls")
            assert await ws.receive_text() == "wss:tls"
        if proxy_kind == "http":
            assert http_proxy.requests == [f"CONNECT localhost:{server.port} HTTP/1.1"]


@pytest.mark.parametrize("scheme", ["socks5", "socks5h", "socks4"])  # (pproxy has no SOCKS4a)
async def test_through_socks_proxies(scheme: str, socks: dict[str, int]) -> None:
    async with open_websocket_server(echo, "127.0.0.1", 0) as server:
        proxy = f"{scheme}://127.0.0.1:{socks[scheme.rstrip('h')]}"
        async with open_websocket_url(f"ws://localhost:{server.port}/", proxy=proxy) as ws:
            await ws.send_text(scheme)
            assert await ws.receive_text() == f"ws:{scheme}"
        assert ws.close_code == 1000


async def test_socks5_credentials(socks: dict[str, int]) -> None:
    port = socks["socks5-auth"]
    async with open_websocket_server(echo, "127.0.0.1", 0) as server:
        good = f"socks5://alice:s3cret@127.0.0.1:{port}"
        async with open_websocket("127.0.0.1", server.port, proxy=good) as ws:
            await ws.send_text("in")
            assert await ws.receive_text() == "ws:in"
        for bad in (f"socks5://alice:wrong@127.0.0.1:{port}", f"socks5://127.0.0.1:{port}"):
            with pytest.raises(ProxyError, match="socks5 proxy") as info:
                async with open_websocket("127.0.0.1", server.port, proxy=bad):
                    pass  # pragma: no cover
            assert info.value.status is None
            assert "wrong" not in str(info.value)


@pytest.mark.parametrize("scheme", ["http", "socks5", "socks4"])
async def test_an_unreachable_proxy_raises_oserror(scheme: str) -> None:
    with pytest.raises(ConnectionRefusedError):  # port 1 on the loopback: nothing listens
        async with open_websocket("127.0.0.1", 8000, proxy=f"{scheme}://127.0.0.1:1"):
            pass  # pragma: no cover


@pytest.mark.parametrize(
    ("proxy", "message"),
    [
        ("ftp://proxy.example:21", "scheme must be one of"),
        ("https://proxy.example:443", "scheme must be one of"),
        ("proxy.example:3128", "scheme must be one of"),
        ("http://:3128", "no host"),
        ("socks5://proxy.example:port", "invalid port"),
    ],
)
async def test_a_bad_proxy_url_is_refused_before_connecting(proxy: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        async with open_websocket("127.0.0.1", 1, proxy=proxy):
            pass  # pragma: no cover


def test_proxy_urls() -> None:
    assert ProxyURL.parse("http://proxy.example") == ProxyURL("http", "proxy.example", 80)
    assert ProxyURL.parse("SOCKS5H://proxy.example").port == 1080
    url = ProxyURL.parse("socks5://bob:pa%3Ass@proxy.example:1081")
    assert (url.username, url.password, url.port) == ("bob", "pa:ss", 1081)
    assert "pa:ss" not in repr(url)
    with pytest.raises(ValueError, match="scheme must be one of") as info:
        ProxyURL.parse("gopher://bob:secret@proxy.example:70")
    assert "secret" not in str(info.value)
