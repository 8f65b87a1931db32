"""The lifetime of trio_ws.asgi.as_asgi's connections: lifespan shutdown and aclose() close them
with 1001, Starlette's lifespan= closes them through the application as a context manager, and a
cancelled ASGI call ends its connection as a shutdown would."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from asgi_driver import ASGICall, asgi_call, websocket_scope
from starlette.applications import Starlette
from starlette.routing import Mount

from trio_ws import Router, WebSocket, WebSocketDisconnect
from trio_ws.asgi import ASGIWebSocketApp, as_asgi

if sys.version_info < (3, 11):  # pragma: no cover - trio depends on the backport there
    from exceptiongroup import BaseExceptionGroup

Seen = list[Any]


def waiting_handler(seen: Seen) -> Any:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            await ws.receive_text()
        except WebSocketDisconnect as exc:
            seen.append((exc.code, exc.reason))

    return handler


async def test_lifespan_shutdown_closes_with_1001_and_startup_serves_again() -> None:
    seen: Seen = []
    app = as_asgi(waiting_handler(seen))
    async with asgi_call(app, {"type": "lifespan"}) as lifespan:
        await lifespan.put({"type": "lifespan.startup"})
        assert await lifespan.get() == {"type": "lifespan.startup.complete"}
        async with asgi_call(app, websocket_scope()) as call:
            assert (await call.get())["type"] == "websocket.accept"
            await trio.testing.wait_all_tasks_blocked()
            assert len(app.server.connections) == 1
            await lifespan.put({"type": "lifespan.shutdown"})
            assert await call.get() == {"type": "websocket.close", "code": 1001, "reason": ""}
        assert await lifespan.get() == {"type": "lifespan.shutdown.complete"}
    assert seen == [(1001, "")]
    async with asgi_call(app, websocket_scope()) as call:  # closed: refused until started again
        start = await call.get()
        assert start["status"] == 503
    async with asgi_call(app, {"type": "lifespan"}) as lifespan:
        await lifespan.put({"type": "lifespan.startup"})
        assert await lifespan.get() == {"type": "lifespan.startup.complete"}
        async with asgi_call(app, websocket_scope()) as call:
            assert (await call.get())["type"] == "websocket.accept"
            await call.put({"type": "websocket.disconnect", "code": 1000})
        await lifespan.put({"type": "lifespan.shutdown"})
        assert await lifespan.get() == {"type": "lifespan.shutdown.complete"}


async def test_starlettes_lifespan_closes_a_mounted_app_used_as_a_context_manager() -> None:
    seen: Seen = []
    router = Router()

    @router.websocket("/chat/{room}")
    async def chat(ws: WebSocket, room: str) -> None:
        seen.append(room)
        await waiting_handler(seen)(ws)

    ws_app = as_asgi(router)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with ws_app:
            yield

    site = Starlette(routes=[Mount("/ws", app=ws_app)], lifespan=lifespan)
    async with asgi_call(site, {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}) as life:
        await life.put({"type": "lifespan.startup"})
        assert await life.get() == {"type": "lifespan.startup.complete"}
        scope = websocket_scope("/ws/chat/lobby")  # Starlette's Mount sets root_path
        async with asgi_call(site, scope) as call:
            assert (await call.get())["type"] == "websocket.accept"
            await trio.testing.wait_all_tasks_blocked()
            await life.put({"type": "lifespan.shutdown"})
            assert await call.get() == {"type": "websocket.close", "code": 1001, "reason": ""}
        assert await life.get() == {"type": "lifespan.shutdown.complete"}
    assert seen == ["lobby", (1001, "")]


async def test_aclose_answers_a_handshake_in_progress_with_503() -> None:
    async def undecided(ws: WebSocket) -> None:
        await trio.sleep_forever()

    app = as_asgi(undecided)
    async with asgi_call(app, websocket_scope()) as call:
        await trio.testing.wait_all_tasks_blocked()
        await app.aclose()
        assert (await call.get())["status"] == 503


async def test_a_handler_that_ignores_the_close_is_cancelled_after_close_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cancelled: list[float] = []

    async def stubborn(ws: WebSocket) -> None:
        await ws.accept()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.append(trio.current_time())
            raise

    app = as_asgi(stubborn, close_timeout=3)
    async with asgi_call(app, websocket_scope()) as call:
        assert (await call.get())["type"] == "websocket.accept"
        start = trio.current_time()
        await app.aclose()
        assert (await call.get())["code"] == 1001
    assert len(cancelled) == 1
    assert 3 <= cancelled[0] - start < 4


async def run_cancellable(app: ASGIWebSocketApp, cancel_at: str) -> tuple[ASGICall, trio.CancelScope]:
    """Run a call, cancel it once ``cancel_at`` is what the application sent last (``""``: at
    once, when all is blocked), and return it when it has ended."""
    call = ASGICall(app, websocket_scope())
    scope = trio.CancelScope()

    async def run() -> None:
        with scope:
            await call.run()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await call.put({"type": "websocket.connect"})
            if cancel_at:
                assert (await call.get())["type"] == cancel_at
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()
    return call, scope


async def test_cancelling_the_call_closes_an_accepted_connection_with_1001() -> None:
    seen: Seen = []
    call, scope = await run_cancellable(as_asgi(waiting_handler(seen)), "websocket.accept")
    assert call.pending() == [{"type": "websocket.close", "code": 1001, "reason": ""}]
    assert seen == [(1001, "server shutting down")]
    assert scope.cancelled_caught  # the cancellation went on to the scope that asked for it
    assert isinstance(call.error, BaseExceptionGroup)
    assert call.error.split(trio.Cancelled)[1] is None  # nothing but the cancellation


async def test_cancelling_the_call_refuses_a_handshake_in_progress_with_503() -> None:
    cancelled: list[bool] = []

    async def undecided(ws: WebSocket) -> None:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.append(True)
            raise

    call, scope = await run_cancellable(as_asgi(undecided), "")
    start, body = call.pending()
    assert (start["type"], start["status"]) == ("websocket.http.response.start", 503)
    assert body["body"] == b"server shutting down"
    assert cancelled == [True]
    assert scope.cancelled_caught


@pytest.mark.parametrize("accepted", [False, True])
async def test_a_finished_call_is_not_touched_by_a_later_cancellation(accepted: bool) -> None:
    async def quick(ws: WebSocket) -> None:
        if accepted:
            await ws.accept()
        await ws.close(4000)

    app = as_asgi(quick)
    with trio.CancelScope() as scope:
        async with asgi_call(app, websocket_scope()) as call:
            pass
        scope.cancel()
        await trio.lowlevel.checkpoint()
    assert scope.cancelled_caught
    kinds = [m["type"] for m in call.pending()]
    assert kinds == (
        ["websocket.accept", "websocket.close"]
        if accepted
        else ["websocket.http.response.start", "websocket.http.response.body"]
    )
    assert call.error is None
