"""Handshake defences under attack: each test attacks one and checks the refusal (status or close
code) while another client keeps being served."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import jwt
import pytest
import trio
import websockets.exceptions
import websockets.sync.client as ws_sync
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.typing import Origin

from trio_ws import (
    APIKey,
    AuthBackend,
    BearerToken,
    HandshakeRejected,
    HasPermission,
    HTTPBasic,
    IsAdminUser,
    IsAuthenticated,
    JWTAuth,
    MessageLimit,
    RateLimit,
    Router,
    WebSocket,
    WebSocketClose,
    WebSocketDisconnect,
    open_websocket,
    open_websocket_server,
    origin_allowed,
)
from trio_ws.protocol import ResponseParser, build_request
from trio_ws.testing import open_test_client


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    async for message in ws.iter_text():
        await ws.send_text(message)


async def whoami(ws: WebSocket) -> None:
    await ws.accept()
    user = ws.user if isinstance(ws.user, (dict, str)) or ws.user is None else str(ws.user)
    await ws.send_json({"user": user, "auth": type(ws.auth).__name__ if ws.auth else None})


async def handshake(
    port: int, path: str = "/", headers: list[tuple[str, str]] | None = None, local: str = "127.0.0.1"
) -> tuple[int, dict[str, str], bytes]:
    """A raw handshake from ``local``: the status, headers (lower-case names) and body."""
    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=local)
    async with stream:
        request, _ = build_request(f"127.0.0.1:{port}", path, headers=headers or [])
        await stream.send_all(request)
        parser = ResponseParser()
        response = None
        while response is None:
            data = await stream.receive_some()
            if not data:
                raise ConnectionError("closed before answering")
            response = parser.receive_data(data)
        body = parser.trailing
        if response.status != 101:
            while chunk := await stream.receive_some():
                body += chunk
        return response.status, {k: response.headers[k] for k in response.headers}, body


@asynccontextmanager
async def bystander(port: int, local: str = "127.0.0.2") -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """A client from another address, connected before the attack; ``check()`` proves it is served."""
    async with open_websocket("127.0.0.1", port, "/", local_address=local) as ws:
        count = 0

        async def check() -> None:
            nonlocal count
            count += 1
            await ws.send_text(f"still served {count}")
            assert await ws.receive_text() == f"still served {count}"

        await check()
        yield check


# ------------------------------------------------------------------ origins


@pytest.mark.parametrize(
    ("origin", "allowed", "expected"),
    [
        ("https://chat.example.com", ["https://chat.example.com"], True),
        ("https://CHAT.example.com:443", ["https://chat.example.com"], True),
        ("https://chat.example.com:8443", ["https://chat.example.com"], False),
        ("http://chat.example.com", ["https://chat.example.com"], False),
        ("https://evil.com", ["https://chat.example.com"], False),
        ("https://chat.example.com.evil.com", ["https://chat.example.com"], False),
        ("https://a.example.org", ["https://*.example.org"], True),
        ("https://a.b.example.org", ["https://*.example.org"], True),
        ("https://example.org", ["https://*.example.org"], False),
        ("https://evilexample.org", ["https://*.example.org"], False),
        ("http://a.example.org", ["https://*.example.org"], False),
        ("https://anything.test", ["*"], True),
        ("null", ["https://chat.example.com"], False),
        ("null", ["null"], True),
        ("not an origin", ["https://chat.example.com"], False),
        ("http://[::1]:8000", ["http://[::1]:8000"], True),
    ],
)
def test_origin_matching(origin: str, allowed: list[str], expected: bool) -> None:
    assert origin_allowed(origin, allowed) is expected


async def test_cross_origin_browser_handshake_is_refused_while_others_are_served() -> None:
    origins = ["https://chat.example.com", "https://*.example.org"]
    async with (
        open_websocket_server(echo, "127.0.0.1", 0, origins=origins) as server,
        bystander(server.port) as check,
    ):
        # What a browser on evil.com sends when its script opens ws://our-server/.
        browser = [
            ("Origin", "https://evil.com"),
            ("User-Agent", "Mozilla/5.0"),
            ("Cookie", "session=victim"),
        ]
        status, _, body = await handshake(server.port, headers=browser)
        assert (status, body) == (403, b"Origin not allowed")
        await check()
        for good in ("https://chat.example.com", "https://eu.example.org"):
            status, _, _ = await handshake(server.port, headers=[("Origin", good)])
            assert status == 101
        status, _, _ = await handshake(server.port)  # no Origin: a non-browser client, allowed
        assert status == 101
        url = f"ws://127.0.0.1:{server.port}/"

        def real_client() -> tuple[int, bytes]:
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                ws_sync.connect(url, origin=Origin("https://evil.com"))
            with ws_sync.connect(url, origin=Origin("https://chat.example.com")) as conn:
                conn.send("hi")
                assert conn.recv(timeout=5) == "hi"
            return refused.value.response.status_code, bytes(refused.value.response.body or b"")

        assert await trio.to_thread.run_sync(real_client) == (403, b"Origin not allowed")
        await check()
    async with open_websocket_server(echo, "127.0.0.1", 0, require_origin=True) as server:
        assert (await handshake(server.port))[::2] == (403, b"Origin not allowed")
        assert (await handshake(server.port, headers=[("Origin", "https://x.test")]))[0] == 101


async def test_origins_per_route_through_the_test_client() -> None:
    router = Router()
    router.add_route("/public", echo)
    router.add_route("/app", echo, origins=["https://app.example.com"])
    async with open_test_client(router, "/public", headers={"Origin": "https://evil.com"}) as client:
        await client.send_text("ok")
        assert await client.receive_text(timeout=5) == "ok"
    with pytest.raises(HandshakeRejected) as info:
        async with open_test_client(router, "/app", headers={"Origin": "https://evil.com"}):
            pass  # pragma: no cover
    assert (info.value.status, info.value.body) == (403, b"Origin not allowed")
    async with open_test_client(router, "/app", headers={"Origin": "https://app.example.com"}) as client:
        await client.send_text("ok")
        assert await client.receive_text(timeout=5) == "ok"


# ------------------------------------------------------------------ rate limits and caps


async def test_a_flood_of_1000_handshakes_from_one_address_is_rate_limited() -> None:
    limit = RateLimit(rps=2, burst=5)
    async with (
        open_websocket_server(echo, "127.0.0.1", 0, rate_limit=limit) as server,
        bystander(server.port) as check,  # from 127.0.0.2: its own bucket
    ):
        start = trio.current_time()
        statuses: dict[int, int] = {}
        retry_after = set()
        for i in range(1000):
            status, headers, _ = await handshake(server.port)
            statuses[status] = statuses.get(status, 0) + 1
            if status == 429:
                retry_after.add(headers["retry-after"])
            if i % 200 == 0:
                await check()
        elapsed = trio.current_time() - start
        assert set(statuses) == {101, 429}
        # The burst, plus what refilled meanwhile: never more.
        assert 5 <= statuses[101] <= 5 + elapsed * 2 + 1
        assert retry_after == {"1"}
        await check()
        assert (await handshake(server.port, local="127.0.0.3"))[0] == 101  # another address
    assert len(limit._buckets) == 3


def test_rate_limit_buckets_are_bounded_and_refill() -> None:
    limit = RateLimit(rps=1, burst=2, max_clients=100)
    assert [limit.hit("a", 0.0) for _ in range(3)] == [0.0, 0.0, 1.0]
    assert limit.hit("a", 0.5) == 0.5  # half a token refilled
    assert limit.hit("a", 1.5) == 0.0
    for i in range(1000):
        limit.hit(f"10.0.{i // 256}.{i % 256}", 2.0)
    assert len(limit._buckets) == 100
    with pytest.raises(ValueError):
        RateLimit(rps=0)


async def test_connection_caps_total_and_per_address() -> None:
    async with open_websocket_server(echo, "127.0.0.1", 0, max_connections=3) as server:
        async with open_websocket("127.0.0.1", server.port) as a, open_websocket("127.0.0.1", server.port):
            with pytest.raises(HandshakeRejected) as info:
                async with open_websocket("127.0.0.1", server.port), open_websocket("127.0.0.1", server.port):
                    pass  # pragma: no cover
            assert info.value.status == 503
            await a.send_text("still served")
            assert await a.receive_text() == "still served"
        async with open_websocket("127.0.0.1", server.port):  # room again
            pass
    async with (
        open_websocket_server(echo, "127.0.0.1", 0, max_connections_per_client=2) as server,
        open_websocket("127.0.0.1", server.port),
        open_websocket("127.0.0.1", server.port),
    ):
        status, headers, _ = await handshake(server.port)
        assert (status, headers["retry-after"]) == (429, "1")
        assert (await handshake(server.port, local="127.0.0.2"))[0] == 101


async def test_5000_half_open_connections_are_dropped_at_open_timeout() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 12_000:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 12_000), hard))
    async with (
        open_websocket_server(echo, "127.0.0.1", 0, open_timeout=2, max_connections=20_000) as server,
        bystander(server.port) as check,
    ):
        idle = []
        start = time.monotonic()
        for _ in range(5000):  # connect, then send nothing
            idle.append(await trio.open_tcp_stream("127.0.0.1", server.port))
        await check()
        status, _, _ = await handshake(server.port, local="127.0.0.3")  # a newcomer gets in
        assert status == 101
        await check()

        async def dropped(stream: trio.SocketStream) -> None:
            assert await stream.receive_some() == b""  # closed by the server, without an answer

        async with trio.open_nursery() as nursery:
            for stream in idle:
                nursery.start_soon(dropped, stream)
        assert time.monotonic() - start >= 2  # not before open_timeout
        await check()
        for stream in idle:
            await stream.aclose()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_a_byte_per_second_handshake_is_dropped_at_open_timeout() -> None:
    async with (
        open_websocket_server(echo, "127.0.0.1", 0, open_timeout=2) as server,
        bystander(server.port) as check,
    ):
        request, _ = build_request("x", "/")
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            start = time.monotonic()
            sent = 0
            with trio.move_on_after(20):
                for byte in request:
                    try:
                        await stream.send_all(bytes([byte]))
                        sent += 1
                        with trio.move_on_after(1.0):  # one byte a second
                            if await stream.receive_some() == b"":  # the server gave up on us
                                break
                    except trio.BrokenResourceError:  # ...or reset the connection doing so
                        break
            elapsed = time.monotonic() - start
        assert sent <= 4 < len(request)
        assert 2 <= elapsed < 5
        await check()


async def test_a_message_flood_over_the_limit_is_closed_with_1008() -> None:
    limit = MessageLimit(messages_per_second=10, burst_messages=20, bytes_per_second=10_000)
    async with (
        open_websocket_server(echo, "127.0.0.1", 0, message_limit=limit) as server,
        bystander(server.port) as check,
        open_websocket("127.0.0.1", server.port) as flooder,
    ):
        received = []
        with contextlib.suppress(WebSocketDisconnect):  # sends fail once the close arrived
            for i in range(1000):
                await flooder.send_text(f"flood {i}")
        with pytest.raises(WebSocketDisconnect) as info:
            while True:  # what arrived before the close is still delivered
                received.append(await flooder.receive_text())
        assert info.value.code == 1008
        # What came within the burst was answered before the close; nothing after the limit was.
        assert received[:20] == [f"flood {i}" for i in range(20)]
        assert len(received) < 30
        await check()
    # Bytes per second, through the test client; and on a route.
    router = Router()
    router.add_route("/", echo, message_limit=MessageLimit(bytes_per_second=1000, burst_bytes=2000))
    async with open_test_client(router) as client:
        await client.send_text("x" * 1500)
        assert await client.receive_text(timeout=5) == "x" * 1500
        await client.send_text("x" * 1500)
        assert await client.wait_closed(timeout=5) == 1008


# ------------------------------------------------------------------ authentication and guards

SECRET = "s3cret-key-of-at-least-32-bytes!!"


def token(claims: dict[str, Any], key: Any = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode({"exp": int(time.time()) + 600, **claims}, key, algorithm=algorithm)


async def test_bearer_api_key_and_basic_backends_first_success_wins() -> None:
    async def verify_token(value: str) -> dict[str, str] | None:
        await trio.lowlevel.checkpoint()
        return {"name": "bearer-user"} if value == "good-token" else None

    backends: list[AuthBackend] = [
        BearerToken(verify_token, query_param="token"),
        APIKey({"key-123": "api-user"}, query_param="api_key"),
        HTTPBasic(lambda user, password: user if (user, password) == ("ann", "pw") else None),
    ]
    basic = base64.b64encode(b"ann:pw").decode()
    cases = [
        (
            {"Authorization": "Bearer good-token"},
            "",
            {"user": {"name": "bearer-user"}, "auth": "BearerToken"},
        ),
        ({}, "token=good-token", {"user": {"name": "bearer-user"}, "auth": "BearerToken"}),
        ({"X-API-Key": "key-123"}, "", {"user": "api-user", "auth": "APIKey"}),
        ({}, "api_key=key-123", {"user": "api-user", "auth": "APIKey"}),
        ({"Authorization": f"Basic {basic}"}, "", {"user": "ann", "auth": "HTTPBasic"}),
        ({"Authorization": "Bearer bad", "X-API-Key": "key-123"}, "", {"user": "api-user", "auth": "APIKey"}),
        ({"Authorization": "Basic !!!"}, "", {"user": None, "auth": None}),  # no guard: anonymous is fine
    ]
    router = Router(auth=backends)
    router.add_route("/", whoami)
    for headers, query, expected in cases:
        async with open_test_client(router, headers=headers, query_string=query) as client:
            assert await client.receive_json(timeout=5) == expected


async def test_guards_401_without_credentials_403_without_permission() -> None:
    router = Router(auth=[JWTAuth(SECRET, query_param="token")])
    router.add_route("/me", whoami, guards=[IsAuthenticated()])
    router.add_route("/admin", whoami, guards=[IsAuthenticated(), IsAdminUser()])
    router.add_route("/reports", whoami, guards=[HasPermission("reports:read")])

    async def daytime(request: Any, principal: Any) -> bool:
        await trio.lowlevel.checkpoint()
        return principal is not None and principal.get("sub") != "night-owl"

    router.add_route("/custom", whoami, guards=[daytime])
    user = token({"sub": "ann", "scope": "chat:write reports:read"})
    admin = token({"sub": "root", "roles": ["admin"]})
    expired = jwt.encode({"sub": "ann", "exp": int(time.time()) - 10}, SECRET, algorithm="HS256")
    wrong_key = token({"sub": "ann"}, key="another-secret-of-at-least-32-bytes")
    owl = token({"sub": "night-owl"})
    expectations = [
        ("/me", None, 401),
        ("/me", expired, 401),
        ("/me", wrong_key, 401),
        ("/me", user, 101),
        ("/admin", user, 403),
        ("/admin", admin, 101),
        ("/reports", admin, 403),
        ("/reports", user, 101),
        ("/reports", None, 401),
        ("/custom", owl, 403),
        ("/custom", user, 101),
    ]
    async with open_websocket_server(router, "127.0.0.1", 0) as server:
        for path, jwt_token, expected in expectations:
            headers = [("Authorization", f"Bearer {jwt_token}")] if jwt_token else []
            status, response_headers, body = await handshake(server.port, path, headers)
            assert status == expected, (path, jwt_token, body)
            if status == 401:
                reasons = {expired: b": token expired", wrong_key: b": bad signature"}
                reason = reasons.get(jwt_token, b"") if jwt_token else b""
                assert body == b"Authentication required" + reason
                assert response_headers["www-authenticate"] == "Bearer"
            if status == 403:
                assert body == b"Permission denied"
        url = f"ws://127.0.0.1:{server.port}"

        def real_client() -> tuple[int, dict[str, Any]]:
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                ws_sync.connect(f"{url}/admin?token={user}")
            with ws_sync.connect(f"{url}/admin?token={admin}") as conn:
                return refused.value.response.status_code, json.loads(str(conn.recv(timeout=5)))

        status, seen = await trio.to_thread.run_sync(real_client)
        assert status == 403
        assert seen["user"]["sub"] == "root"
        assert seen["auth"] == "JWTAuth"


async def test_jwt_rs256_with_audience_and_issuer() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    backend = JWTAuth(public_pem, algorithms=["RS256"], audience="chat", issuer="https://id.example.com")
    router = Router(auth=[backend], guards=[IsAuthenticated()])
    router.add_route("/", whoami)
    good = token({"sub": "ann", "aud": "chat", "iss": "https://id.example.com"}, private, "RS256")
    wrong_audience = token({"sub": "ann", "aud": "other", "iss": "https://id.example.com"}, private, "RS256")
    hs256_forgery = token({"sub": "ann", "aud": "chat", "iss": "https://id.example.com"}, SECRET)
    async with open_test_client(router, headers={"Authorization": f"Bearer {good}"}) as client:
        assert (await client.receive_json(timeout=5))["user"]["sub"] == "ann"
    for bad in (wrong_audience, hs256_forgery):
        with pytest.raises(HandshakeRejected) as info:
            async with open_test_client(router, headers={"Authorization": f"Bearer {bad}"}):
                pass  # pragma: no cover
        assert info.value.status == 401


async def test_server_wide_auth_and_route_guards_and_the_order_of_checks() -> None:
    calls: list[str] = []

    def verify(value: str) -> str | None:
        calls.append(value)
        return "ann" if value == "good" else None

    router = Router()
    router.add_route("/", whoami)
    router.add_route("/strict", whoami, guards=[lambda request, user: user == "ann"])
    async with open_websocket_server(
        router,
        "127.0.0.1",
        0,
        origins=["https://app.test"],
        rate_limit=RateLimit(rps=0.001, burst=2),
        auth=[BearerToken(verify)],
    ) as server:
        good = [("Origin", "https://app.test"), ("Authorization", "Bearer good")]
        # A refused origin spends no token and calls no backend.
        for _ in range(5):
            assert (await handshake(server.port, headers=[("Origin", "https://evil.test"), good[1]]))[
                0
            ] == 403
        assert calls == []
        status, _, body = await handshake(server.port, "/strict", good)
        assert status == 101
        # Credentials that do not verify are no credentials: 401.
        assert (await handshake(server.port, "/strict", [good[0], ("Authorization", "Bearer bad")]))[0] == 401
        # The bucket is empty now: 429 before authentication runs.
        calls.clear()
        status, headers, body = await handshake(server.port, "/", good)
        assert (status, body) == (429, b"Rate limit exceeded")
        assert int(headers["retry-after"]) > 1
        assert calls == []


async def test_client_address_from_trusted_proxies_only() -> None:
    async def address(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_json(ws.client)

    forwarded = [("X-Forwarded-For", "203.0.113.9, 10.0.0.5")]
    async with (
        open_websocket_server(
            address, "127.0.0.1", 0, trusted_proxies=["127.0.0.0/8", "10.0.0.0/8"]
        ) as server,
        open_websocket("127.0.0.1", server.port, headers=forwarded) as ws,
    ):
        assert await ws.receive_json() == ["203.0.113.9", 0]
    rfc7239 = [("Forwarded", 'for="[2001:db8::7]:4711";proto=https, for=10.0.0.5')]
    async with (
        open_websocket_server(
            address, "127.0.0.1", 0, trusted_proxies=["127.0.0.0/8", "10.0.0.0/8"], proxy_headers="forwarded"
        ) as server,
        open_websocket("127.0.0.1", server.port, headers=rfc7239) as ws,
    ):
        assert await ws.receive_json() == ["2001:db8::7", 0]
    async with (
        open_websocket_server(address, "127.0.0.1", 0) as server,  # no trusted proxy
        open_websocket("127.0.0.1", server.port, headers=forwarded) as ws,
    ):
        assert (await ws.receive_json())[0] == "127.0.0.1"
    # Per-address rate limits then count the real client, not the proxy.
    async with open_websocket_server(
        echo, "127.0.0.1", 0, trusted_proxies=["127.0.0.1"], rate_limit=RateLimit(rps=0.001, burst=1)
    ) as server:
        assert (await handshake(server.port, headers=[("X-Forwarded-For", "198.51.100.1")]))[0] == 101
        assert (await handshake(server.port, headers=[("X-Forwarded-For", "198.51.100.1")]))[0] == 429
        assert (await handshake(server.port, headers=[("X-Forwarded-For", "198.51.100.2")]))[0] == 101


async def test_cr_lf_in_headers_and_close_reasons_is_refused() -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        WebSocketClose(1000, "bye\r\nSet-Cookie: x=1")
    errors: list[Exception] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            await ws.close(1000, "bye\nnext")
        except ValueError as exc:
            errors.append(exc)
        await ws.close(1000, "bye")

    async with open_test_client(handler) as client:
        assert await client.wait_closed(timeout=5) == 1000
    assert "CR or LF" in str(errors[0])
    with pytest.raises(ValueError, match="CR, LF"):
        async with open_test_client(echo, headers={"X-Evil": "a\r\nb"}):
            pass  # pragma: no cover


async def test_server_wide_guards_and_a_route_rate_limit() -> None:
    router = Router()
    router.add_route("/", whoami)
    router.add_route("/scarce", whoami, rate_limit=RateLimit(rps=0.001, burst=1))
    async with open_websocket_server(
        router, "127.0.0.1", 0, auth=[APIKey({"k1": "ann"})], guards=[IsAuthenticated()]
    ) as server:
        assert (await handshake(server.port))[0] == 401
        key = [("X-API-Key", "k1")]
        assert (await handshake(server.port, "/", key))[0] == 101
        assert (await handshake(server.port, "/scarce", key))[0] == 101
        status, headers, body = await handshake(server.port, "/scarce", key)
        assert (status, body, headers["retry-after"]) == (429, b"Rate limit exceeded", "1000")
        assert (await handshake(server.port, "/", key))[0] == 101  # the route's bucket only
        assert (await handshake(server.port, "/scarce", key, local="127.0.0.2"))[0] == 101


async def test_a_failing_backend_gets_500_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    def verify(token: str) -> None:
        raise RuntimeError("the user database is down")

    async with open_websocket_server(whoami, "127.0.0.1", 0, auth=[BearerToken(verify)]) as server:
        status, _, body = await handshake(server.port, headers=[("Authorization", "Bearer x")])
        assert status == 500
        assert b"database" not in body
        assert (await handshake(server.port))[0] == 101  # no credentials, no guard: served
    assert "security checks failed" in caplog.text
    router = Router(auth=[BearerToken(verify)])
    router.add_route("/", whoami)
    with pytest.raises(HandshakeRejected) as info:
        async with open_test_client(
            router, headers={"Authorization": "Bearer x"}, raise_server_exceptions=False
        ):
            pass  # pragma: no cover
    assert info.value.status == 500
    with pytest.raises(RuntimeError, match="the user database is down"):  # by default: the cause itself
        async with open_test_client(router, headers={"Authorization": "Bearer x"}):
            pass  # pragma: no cover


def test_bad_settings_are_refused_early() -> None:
    with pytest.raises(TypeError, match="not a string"):
        Router(origins="https://a.test")
    with pytest.raises(TypeError, match="authentication backend"):
        Router(auth=[lambda request: None])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="keys= or verify="):
        APIKey()
