"""Behind trusted proxies, the URL a handler sees is the one the client asked for: the scheme from
``X-Forwarded-Proto`` / ``Forwarded: proto=`` and the host from ``X-Forwarded-Host`` / ``Forwarded:
host=``, taken from the same hop as the client address. Only the header family the proxies write is
read (``proxy_headers``); anyone else's headers, and the other family, change nothing."""

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
    family = "forwarded" if any(name == "Forwarded" for name, _ in headers) else "x-forwarded"
    async with open_websocket_server(
        seen, "127.0.0.1", 0, trusted_proxies=TRUSTED, proxy_headers=family
    ) as server:
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


@pytest.mark.parametrize(
    ("family", "forged"),
    [
        # nginx writes X-Forwarded-*; the client adds a Forwarded of its own, which nginx passes on
        ("x-forwarded", [("Forwarded", "for=6.6.6.6;proto=https;host=evil.example")]),
        # a proxy that writes Forwarded; the client adds X-Forwarded-* of its own
        (
            "forwarded",
            [
                ("X-Forwarded-For", "6.6.6.6"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "evil.example"),
            ],
        ),
    ],
)
async def test_a_client_cannot_speak_for_the_proxy_in_the_other_header_family(
    family: str, forged: list[tuple[str, str]]
) -> None:
    written = {
        "x-forwarded": [
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Host", "real.example"),
        ],
        "forwarded": [("Forwarded", "for=203.0.113.9;proto=http;host=real.example")],
    }[family]
    async with open_websocket_server(
        seen, "127.0.0.1", 0, trusted_proxies=["127.0.0.1"], proxy_headers=family
    ) as server:
        got = await ask(server.port, forged + written)
    assert (got["client"], got["url"]) == ("203.0.113.9", "ws://real.example/feed?x=1")


async def test_a_proxy_hop_without_an_address_ends_the_walk() -> None:
    """The trusted proxy's element names no client: an older element — the client's own — is not
    taken for it."""
    headers = [("Forwarded", "for=6.6.6.6;proto=https;host=evil.example, proto=http;host=real.example")]
    async with open_websocket_server(
        seen, "127.0.0.1", 0, trusted_proxies=["127.0.0.1"], proxy_headers="forwarded"
    ) as server:
        got = await ask(server.port, headers)
    assert (got["client"], got["url"]) == ("127.0.0.1", "ws://real.example/feed?x=1")


async def test_x_forwarded_for_entries_lose_their_ports() -> None:
    headers = [("X-Forwarded-For", "203.0.113.9:5555, 10.0.0.5:1234")]
    async with open_websocket_server(seen, "127.0.0.1", 0, trusted_proxies=TRUSTED) as server:
        got = await ask(server.port, headers)
    assert got["client"] == "203.0.113.9"  # and 10.0.0.5:1234 was known for a trusted proxy


async def test_proxy_headers_is_one_of_two_families() -> None:
    with pytest.raises(ValueError, match="proxy_headers"):
        async with open_websocket_server(seen, "127.0.0.1", 0, proxy_headers="x-real-ip"):
            pass  # pragma: no cover


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
