"""The test client: receives take ``timeout`` first and time out by default with a ``TimeoutError``,
a refused handshake is a ``PermissionError`` that says why, and the server's security settings can
be given to ``open_test_client`` itself."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import trio_ws.testing
from trio_ws import (
    BearerToken,
    CloseCode,
    ConnectionSummary,
    HandshakeRejected,
    IsAdminUser,
    IsAuthenticated,
    RateLimit,
    Request,
    WebSocket,
    WebSocketClose,
    WebSocketDisconnect,
)
from trio_ws.testing import ReceiveTimeout, TestClient, TestHandshakeRejected, open_test_client

if sys.version_info < (3, 11):  # pragma: no cover - trio depends on the backport there
    from exceptiongroup import ExceptionGroup


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    async for message in ws.iter_text():
        await ws.send_text(message)


async def silent(ws: WebSocket) -> None:
    await ws.accept()
    await ws.receive()  # until the client closes


async def json_echo(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_json(await ws.receive_json())
    await ws.send_json(await ws.receive_json(mode="binary"), mode="binary")


# ------------------------------------------------------------ argument order


async def test_receive_json_takes_the_timeout_first() -> None:
    async with open_test_client(json_echo) as client:
        await client.send_json({"a": 1})
        assert await client.receive_json(1.0) == {"a": 1}
        await client.send_json([2], mode="binary")
        assert await client.receive_json(1.0, mode="binary") == [2]
        assert not client.closed


async def test_every_receive_takes_the_timeout_first_and_mode_only_by_keyword() -> None:
    for name in ("receive", "receive_text", "receive_bytes", "receive_json", "wait_closed"):
        parameters = list(inspect.signature(getattr(TestClient, name)).parameters.values())
        assert parameters[1].name == "timeout", name
    for name in ("receive_json", "send_json"):
        mode = inspect.signature(getattr(TestClient, name)).parameters["mode"]
        assert mode.kind is inspect.Parameter.KEYWORD_ONLY, name


async def test_a_mode_given_as_the_timeout_is_a_clear_type_error() -> None:
    async with open_test_client(json_echo) as client:
        with pytest.raises(TypeError, match="mode is keyword-only"):
            await client.receive_json("binary")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await client.send_json([1], "binary")  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="number of seconds"):
            await client.receive_text("1")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="0 or more"):
            await client.receive_text(-1)
        assert not client.closed  # none of that reached the server


# ------------------------------------------------ the state, refusals, timeouts


async def test_accepted_closed_and_close_code() -> None:
    async def closes(ws: WebSocket) -> None:
        await ws.accept()
        await ws.receive_text()
        await ws.close(4001, "bye")

    async with open_test_client(closes) as client:
        assert (client.accepted, client.closed, client.close_code) == (True, False, None)
        await client.send_text("go")
        assert await client.wait_closed() == 4001
        assert (client.accepted, client.closed, client.close_code) == (True, True, 4001)
        assert client.close_reason == "bye"


async def test_a_refused_handshake_is_a_permission_error_that_says_why() -> None:
    async def refuses(ws: WebSocket) -> None:
        await ws.reject(403, "Origin not allowed", [("X-Why", "origin")])

    with pytest.raises(PermissionError) as info:
        async with open_test_client(refuses):
            pass  # pragma: no cover
    error = info.value
    assert isinstance(error, TestHandshakeRejected)
    assert isinstance(error, HandshakeRejected)
    assert str(error) == "403 Forbidden: Origin not allowed"
    assert (error.status, error.body) == (403, b"Origin not allowed")
    assert error.headers is not None and error.headers.get("x-why") == "origin"


async def test_a_refusal_without_a_body_says_the_status() -> None:
    async def refuses(ws: WebSocket) -> None:
        await ws.reject(404)

    with pytest.raises(TestHandshakeRejected) as info:
        async with open_test_client(refuses):
            pass  # pragma: no cover
    assert str(info.value) == "404 Not Found"


async def test_a_receive_that_times_out_is_a_timeout_error(autojump_clock: trio.testing.MockClock) -> None:
    async with open_test_client(echo) as client:
        start = trio.current_time()
        with pytest.raises(TimeoutError) as info:
            await client.receive_text(timeout=0.5)
        assert trio.current_time() - start == pytest.approx(0.5)
        assert isinstance(info.value, trio.TooSlowError)
        assert isinstance(info.value, ReceiveTimeout)
        assert str(info.value) == "no text message within 0.5 seconds"
        with pytest.raises(ReceiveTimeout, match="no JSON binary message within 2 seconds"):
            await client.receive_json(2, mode="binary")
        with pytest.raises(ReceiveTimeout, match=r"no close from the server within 1 second$"):
            await client.wait_closed(1)
        assert not client.closed  # a timeout does not close the connection
        await client.send_text("still open")
        assert await client.receive_text() == "still open"


# ---------------------------------------------------- the default timeout


async def test_receives_time_out_by_default(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(600):  # without a default, this test would wait for ever
        async with open_test_client(silent) as client:
            assert client.timeout == 5.0
            for receive in (client.receive, client.receive_text, client.receive_bytes, client.receive_json):
                start = trio.current_time()
                with pytest.raises(ReceiveTimeout):
                    await receive()
                assert trio.current_time() - start == pytest.approx(5.0)
            start = trio.current_time()
            with pytest.raises(ReceiveTimeout):
                await client.wait_closed()
            assert trio.current_time() - start == pytest.approx(5.0)


async def test_the_default_timeout_is_set_per_client_and_overridden_per_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_client(silent, timeout=1) as client:
        start = trio.current_time()
        with pytest.raises(ReceiveTimeout, match=r"within 1 second$"):
            await client.receive_text()
        assert trio.current_time() - start == pytest.approx(1.0)
        start = trio.current_time()
        with pytest.raises(ReceiveTimeout, match="within 3 seconds"):
            await client.receive_text(timeout=3)
        assert trio.current_time() - start == pytest.approx(3.0)
        with trio.move_on_after(1000) as outer:
            await client.receive_text(timeout=None)  # for ever: only the outer scope ends it
        assert outer.cancelled_caught
    async with open_test_client(silent, timeout=None) as client:
        with trio.move_on_after(1000) as outer:
            await client.receive()
        assert outer.cancelled_caught


async def test_a_bad_default_timeout_is_refused_up_front() -> None:
    with pytest.raises(TypeError, match="number of seconds"):
        async with open_test_client(echo, timeout="5"):  # type: ignore[arg-type]
            pass  # pragma: no cover


# ------------------------------------------- security settings of the server


async def refused(path: str = "/", **kwargs: Any) -> TestHandshakeRejected:
    with pytest.raises(PermissionError) as info:
        async with open_test_client(echo, path, **kwargs):
            pass  # pragma: no cover
    assert isinstance(info.value, TestHandshakeRejected)
    return info.value


async def test_origins_and_require_origin() -> None:
    error = await refused(origins=["https://a.example"], headers={"Origin": "https://b.example"})
    assert error.status == 403
    assert "Origin not allowed" in str(error)
    async with open_test_client(
        echo, origins=["https://a.example"], headers={"Origin": "https://a.example"}
    ) as c:
        await c.send_text("in")
        assert await c.receive_text() == "in"
    assert "Origin not allowed" in str(await refused(require_origin=True))


async def verify(token: str) -> dict[str, Any] | None:
    return {"sub": token, "roles": ["admin"] if token == "root" else []} if token in ("ann", "root") else None


async def whoami(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_json(ws.user)


async def test_auth_and_guards() -> None:
    settings: dict[str, Any] = {"auth": [BearerToken(verify)], "guards": [IsAuthenticated()]}
    error = await refused(**settings)
    assert (error.status, str(error)) == (401, "401 Unauthorized: Authentication required")
    assert error.headers is not None and error.headers.get("www-authenticate") == "Bearer"
    assert (await refused(headers={"Authorization": "Bearer eve"}, **settings)).status == 401
    async with open_test_client(whoami, headers={"Authorization": "Bearer ann"}, **settings) as client:
        assert await client.receive_json() == {"sub": "ann", "roles": []}
    admins: dict[str, Any] = {"auth": [BearerToken(verify)], "guards": [IsAuthenticated(), IsAdminUser()]}
    error = await refused(headers={"Authorization": "Bearer ann"}, **admins)
    assert str(error) == "403 Forbidden: Permission denied"
    async with open_test_client(whoami, headers={"Authorization": "Bearer root"}, **admins) as client:
        assert (await client.receive_json())["sub"] == "root"


async def test_a_guard_of_our_own() -> None:
    def weekday_only(request: Request, principal: Any) -> bool:
        return request.query_params.get("day") != "sunday"

    error = await refused(query_string="day=sunday", guards=[weekday_only])
    assert str(error) == "401 Unauthorized: Authentication required"  # nobody was authenticated
    async with open_test_client(echo, query_string="day=monday", guards=[weekday_only]) as client:
        assert client.accepted


async def test_a_rate_limit_shared_by_test_clients(autojump_clock: trio.testing.MockClock) -> None:
    limit = RateLimit(1, burst=1)
    async with open_test_client(echo, rate_limit=limit) as client:
        assert client.accepted
    error = await refused(rate_limit=limit)
    assert (error.status, str(error)) == (429, "429 Too Many Requests: Rate limit exceeded")
    assert error.headers is not None and error.headers.get("retry-after") == "1"
    autojump_clock.jump(1)
    async with open_test_client(echo, rate_limit=limit) as client:
        assert client.accepted


async def test_connection_caps_and_request_size() -> None:
    error = await refused(max_connections=0)
    assert (error.status, str(error)) == (503, "503 Service Unavailable: too many connections")
    error = await refused(max_connections_per_client=0)
    assert (error.status, str(error)) == (
        429,
        "429 Too Many Requests: too many connections from this address",
    )
    error = await refused(max_request_size=256, headers={"X-Big": "x" * 512})
    assert error.status == 431
    with pytest.raises(ValueError, match="max_buffered_bytes"):
        async with open_test_client(echo, max_buffered_bytes=0):
            pass  # pragma: no cover
    async with open_test_client(echo, max_connections=1, max_connections_per_client=1) as client:
        await client.send_text("one is fine")
        assert await client.receive_text() == "one is fine"
    assert client.close_code == CloseCode.NORMAL_CLOSURE


async def test_the_observer_sees_the_test_clients_handshakes() -> None:
    answered: list[int] = []

    class Recorder:
        def handshake_answered(self, status: int) -> None:
            answered.append(status)

        def connection_opened(self) -> None:
            pass

        def connection_closed(self, summary: ConnectionSummary) -> None:
            pass

        def handler_failed(self) -> None:
            pass

    async with open_test_client(echo, observer=Recorder()) as client:
        assert client.accepted
    await refused(origins=["https://a.example"], require_origin=True, observer=Recorder())
    assert answered == [101, 403]


async def test_security_settings_are_checked_up_front() -> None:
    with pytest.raises(TypeError, match="not a string"):
        async with open_test_client(echo, origins="https://a.example"):
            pass  # pragma: no cover


def test_the_testing_names_are_in_the_reference() -> None:
    reference = (Path(__file__).resolve().parent.parent / "docs" / "reference.md").read_text()
    for name in trio_ws.testing.__all__:
        assert f"::: trio_ws.testing.{name}\n" in reference
        assert inspect.getdoc(getattr(trio_ws.testing, name)), name


# ------------------------------------------------ the handler's own exceptions, raised in the test


async def fails_after_accept(ws: WebSocket) -> None:
    await ws.accept()
    await ws.receive_text()
    raise LookupError("no such room")


async def test_a_handlers_exception_is_raised_by_the_receive_that_sees_the_1011() -> None:
    with pytest.raises(LookupError, match="no such room") as info:
        async with open_test_client(fails_after_accept) as client:
            await client.send_text("join")
            await client.receive_text()
    assert info.traceback[-1].name == "fails_after_accept"  # the handler's own traceback


async def test_a_handlers_exception_before_accept_is_raised_when_connecting() -> None:
    async def fails(ws: WebSocket) -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        async with open_test_client(fails):
            pytest.fail("the handshake was refused: the block never runs")


async def test_a_handlers_exception_nobody_received_is_raised_when_the_block_is_left() -> None:
    reached_end = False
    with pytest.raises(LookupError):
        async with open_test_client(fails_after_accept) as client:
            await client.send_text("join")
            reached_end = True
    assert reached_end


async def test_a_failure_in_the_handlers_own_nursery_is_raised_as_its_group() -> None:
    async def fails_in_a_child(ws: WebSocket) -> None:
        await ws.accept()

        async def child() -> None:
            raise ZeroDivisionError

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)

    with pytest.raises(ExceptionGroup) as info:
        async with open_test_client(fails_in_a_child) as client:
            await client.receive_text()
    assert info.group_contains(ZeroDivisionError)


async def test_raise_server_exceptions_false_shows_what_a_real_client_sees() -> None:
    async with open_test_client(fails_after_accept, raise_server_exceptions=False) as client:
        await client.send_text("join")
        with pytest.raises(WebSocketDisconnect) as info:
            await client.receive_text()
        assert info.value.code == 1011

    async def fails(ws: WebSocket) -> None:
        raise KeyError("missing")

    with pytest.raises(TestHandshakeRejected) as refused:
        async with open_test_client(fails, raise_server_exceptions=False):
            pass
    assert refused.value.status == 500


async def test_closes_the_handler_asks_for_are_not_failures() -> None:
    async def closes(ws: WebSocket) -> None:
        await ws.accept()
        raise WebSocketClose(4003, "forbidden room")

    async with open_test_client(closes) as client:
        with pytest.raises(WebSocketDisconnect) as info:
            await client.receive_text()
        assert (info.value.code, info.value.reason) == (4003, "forbidden room")


async def test_the_test_client_receives_a_message_in_chunks() -> None:
    async def fragments(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_fragments(["one ", "two ", "three"])
        await ws.receive()

    async with open_test_client(fragments) as client:
        with trio.fail_after(5):
            chunks = [chunk async for chunk in client.receive_streaming()]
    texts = [chunk for chunk in chunks if isinstance(chunk, str)]
    assert texts == chunks  # a text message comes in str chunks
    assert "".join(texts) == "one two three"  # (what had arrived before the first step: one chunk)
