"""Behind trusted proxies, the URL a handler sees is the one the client asked for: the scheme from
``X-Forwarded-Proto`` / ``Forwarded: proto=`` and the host from ``X-Forwarded-Host`` / ``Forwarded:
host=``, taken from the same hop as the client address. Anyone else's headers change nothing."""

from __future__ import annotations

from typing import Any

import pytest

from trio_ws import HTTPResponse, Request, WebSocket, open_websocket, open_websocket_server


async def seen(ws: WebSocket) -> None:
    await ws.accept()
    url = ws.url
    await ws.send_json(
        {
            "url": str(url),
            "scheme": url.scheme,
            "secure": url.is_secure,
            "hostname": url.hostname,
            "port": url.port,
            "host": ws.request.host if ws.request else None,
            "client": ws.client[0] if ws.client else None,
        }
    )


async def ask(port: int, headers: list[tuple[str, str]], path: str = "/feed?x=1") -> dict[str, Any]:
    async with open_websocket("127.0.0.1", port, path, headers=headers) as ws:
        result: dict[str, Any] = await ws.receive_json()
        return result


TRUSTED = ["127.0.0.0/8", "10.0.0.0/8"]


@pytest.mark.parametrize(
    ("headers", "url", "client"),
    [
        (  # nginx: one proxy, every header a single value
            [
                ("X-Forwarded-For", "203.0.113.9"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "chat.example.com"),
            ],
            "wss://chat.example.com/feed?x=1",
            "203.0.113.9",
        ),
        (  # the scheme alone; the host stays the Host header's
            [("X-Forwarded-Proto", "https")],
            "wss://127.0.0.1:{port}/feed?x=1",
            "127.0.0.1",
        ),
        (  # wss and ws are taken as they are, in any case
            [("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-Proto", "WSS")],
            "wss://127.0.0.1:{port}/feed?x=1",
            "203.0.113.9",
        ),
        (
            [("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-Proto", "http")],
            "ws://127.0.0.1:{port}/feed?x=1",
            "203.0.113.9",
        ),
        (  # two proxies appending: the hop of the client (the nearest untrusted address) is used,
            # not what the client wrote itself further left
            [
                ("X-Forwarded-For", "198.51.100.7, 203.0.113.9, 10.0.0.5"),
                ("X-Forwarded-Proto", "http, https, http"),
                ("X-Forwarded-Host", "evil.test, chat.example.com:8443, internal.lan"),
            ],
            "wss://chat.example.com:8443/feed?x=1",
            "203.0.113.9",
        ),
        (  # the client's own X-Forwarded-Proto / -Host, to which the proxy appended its word
            [
                ("X-Forwarded-For", "203.0.113.9"),
                ("X-Forwarded-Proto", "https, http"),
                ("X-Forwarded-Host", "evil.test, chat.example.com"),
            ],
            "ws://chat.example.com/feed?x=1",
            "203.0.113.9",
        ),
        (  # RFC 7239: one element per hop, all of its parameters together
            [("Forwarded", 'for=203.0.113.9;proto=https;host="chat.example.com", for=10.0.0.5;proto=http')],
            "wss://chat.example.com/feed?x=1",
            "203.0.113.9",
        ),
        (
            [
                (
                    "Forwarded",
                    "for=198.51.100.7;proto=http;host=evil.test,"
                    " for=203.0.113.9;proto=https;host=a.example.com",
                )
            ],
            "wss://a.example.com/feed?x=1",
            "203.0.113.9",
        ),
        (  # Forwarded without for=: the nearest proxy's word on scheme and host
            [("Forwarded", "proto=https;host=chat.example.com")],
            "wss://chat.example.com/feed?x=1",
            "127.0.0.1",
        ),
        (  # what is not a scheme or a host is ignored
            [
                ("X-Forwarded-For", "203.0.113.9"),
                ("X-Forwarded-Proto", "gopher"),
                ("X-Forwarded-Host", "evil.test/path?x=@other"),
            ],
            "ws://127.0.0.1:{port}/feed?x=1",
            "203.0.113.9",
        ),
        (
            [("X-Forwarded-Host", "[2001:db8::1]:8443"), ("X-Forwarded-Proto", "https")],
            "wss://[2001:db8::1]:8443/feed?x=1",
            "127.0.0.1",
        ),
    ],
)
async def test_a_trusted_proxy_sets_the_scheme_and_host(
    headers: list[tuple[str, str]], url: str, client: str
) -> None:
    async with open_websocket_server(seen, "127.0.0.1", 0, trusted_proxies=TRUSTED) as server:
        got = await ask(server.port, headers)
    expected = url.format(port=server.port)
    assert got["url"] == expected
    assert got["scheme"] == expected.partition(":")[0]
    assert got["secure"] == expected.startswith("wss:")
    assert got["client"] == client
    assert got["host"] == expected.partition("://")[2].partition("/")[0]


async def test_the_nginx_example_gives_wss_and_the_public_host() -> None:
    headers = [
        ("X-Forwarded-For", "203.0.113.9"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "Chat.Example.com"),
    ]
    async with open_websocket_server(seen, "127.0.0.1", 0, trusted_proxies=["127.0.0.1"]) as server:
        got = await ask(server.port, headers)
    assert (got["scheme"], got["secure"], got["hostname"], got["port"]) == (
        "wss",
        True,
        "chat.example.com",
        None,
    )


async def test_an_untrusted_peers_forwarded_headers_change_nothing() -> None:
    headers = [
        ("X-Forwarded-For", "203.0.113.9"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "chat.example.com"),
        ("Forwarded", "for=203.0.113.9;proto=https;host=chat.example.com"),
    ]
    for trusted in ([], ["10.0.0.0/8"]):  # no proxy trusted, or not this one
        async with open_websocket_server(seen, "127.0.0.1", 0, trusted_proxies=trusted) as server:
            got = await ask(server.port, headers)
        assert got["url"] == f"ws://127.0.0.1:{server.port}/feed?x=1"
        assert (got["scheme"], got["secure"], got["client"]) == ("ws", False, "127.0.0.1")
        assert got["host"] == f"127.0.0.1:{server.port}"


async def test_the_http_hook_sees_the_forwarded_url_and_client_too() -> None:
    early: list[tuple[str, Any]] = []

    async def hook(request: Request) -> HTTPResponse | None:
        early.append((request.url, request.client))
        return None

    headers = [
        ("X-Forwarded-For", "203.0.113.9"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "chat.example.com"),
    ]
    async with open_websocket_server(
        seen, "127.0.0.1", 0, trusted_proxies=TRUSTED, process_request=hook
    ) as server:
        got = await ask(server.port, headers)
    assert early == [("wss://chat.example.com/feed?x=1", ("203.0.113.9", 0))]
    assert got["url"] == "wss://chat.example.com/feed?x=1"


def test_a_request_url_follows_its_scheme_and_host() -> None:
    from trio_ws.protocol import RequestParser, build_request

    head, _ = build_request("127.0.0.1:8000", "/a?b=1")
    raw = RequestParser().receive_data(head)
    assert raw is not None
    request = Request(raw)
    assert (request.url, request.host) == ("ws://127.0.0.1:8000/a?b=1", "127.0.0.1:8000")
    request.scheme, request.host = "wss", "chat.example.com"
    assert request.url == "wss://chat.example.com/a?b=1"
    assert request.url.is_secure
