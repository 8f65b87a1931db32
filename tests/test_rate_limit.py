"""``@rate_limit(rps=..., burst=...)`` on a handler: the route's RateLimit, as a decorator."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_ws import HandshakeRejected, RateLimit, Router, WebSocket, rate_limit
from trio_ws.testing import open_test_client


async def hello(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text("hello")


async def connects(router: Router, path: str) -> int:
    """101, or the status of the refusal."""
    try:
        async with open_test_client(router, path) as client:
            assert await client.receive_text(timeout=5) == "hello"
    except HandshakeRejected as exc:
        assert exc.body == b"Rate limit exceeded"
        assert exc.headers is not None and int(exc.headers["retry-after"]) >= 1
        return exc.status
    return 101


@pytest.fixture
def frozen_clock() -> trio.testing.MockClock:
    """Time stands still unless a test moves it, so no token comes back while it counts."""
    return trio.testing.MockClock()


async def test_the_decorator_limits_handshakes_of_its_route(frozen_clock: trio.testing.MockClock) -> None:
    router = Router()

    @router.websocket("/chat")
    @rate_limit(rps=10, burst=20)
    async def chat(ws: WebSocket) -> None:
        await hello(ws)

    router.add_route("/free", hello)
    assert [await connects(router, "/chat") for _ in range(21)] == [101] * 20 + [429]
    assert await connects(router, "/free") == 101  # other routes are not counted
    frozen_clock.jump(0.15)  # 1.5 tokens back at 10 a second
    assert [await connects(router, "/chat") for _ in range(2)] == [101, 429]
    limit = getattr(chat, "__trio_ws_rate_limit__", None)
    assert isinstance(limit, RateLimit) and (limit.rps, limit.burst) == (10, 20)
    assert chat.__name__ == "chat"  # the handler itself, not a wrapper


async def test_the_same_meaning_as_the_rate_limit_argument(frozen_clock: trio.testing.MockClock) -> None:
    by_argument, by_decorator = Router(), Router()
    by_argument.add_route("/", hello, rate_limit=RateLimit(rps=1, burst=3))
    by_decorator.add_route("/", rate_limit(rps=1, burst=3)(lambda ws: hello(ws)))
    for router in (by_argument, by_decorator):
        assert [await connects(router, "/") for _ in range(4)] == [101, 101, 101, 429]
    # burst defaults as RateLimit's does: max(1, ceil(rps)).
    default = Router()
    default.add_route("/", rate_limit(rps=2)(lambda ws: hello(ws)))
    assert [await connects(default, "/") for _ in range(3)] == [101, 101, 429]


async def test_the_route_decorators_own_rate_limit_wins_over_its_routers() -> None:
    router = Router(rate_limit=RateLimit(rps=0.001, burst=1))

    @router.websocket("/roomy")
    @rate_limit(rps=0.001, burst=3)
    async def roomy(ws: WebSocket) -> None:
        await hello(ws)

    router.add_route("/scarce", hello)
    assert [await connects(router, "/roomy") for _ in range(4)] == [101, 101, 101, 429]
    assert [await connects(router, "/scarce") for _ in range(2)] == [101, 429]


def test_misuse_is_refused_with_a_clear_error() -> None:
    router = Router()
    with pytest.raises(TypeError, match=r"must go below @router\.websocket"):

        @rate_limit(rps=10, burst=20)
        @router.websocket("/above")
        async def above(ws: WebSocket) -> None: ...

    with pytest.raises(TypeError, match="already has a @rate_limit"):

        @rate_limit(rps=1)
        @rate_limit(rps=2)
        async def twice(ws: WebSocket) -> None: ...

    async def both(ws: WebSocket) -> None: ...

    with pytest.raises(ValueError, match="give one"):
        router.add_route("/both", rate_limit(rps=1)(both), rate_limit=RateLimit(rps=1))
    with pytest.raises(ValueError, match="rps must be positive"):
        rate_limit(rps=0)
    with pytest.raises(ValueError, match="burst"):
        rate_limit(rps=1, burst=0)
