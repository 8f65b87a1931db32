"""The ASGI lifespan on ``open_asgi_server``: startup before serving, shutdown after, the state the
scopes get, the three modes, and failures said in one line."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing

from trio_ws import open_websocket
from trio_ws.asgi import ASGIApp, LifespanFailed, Message, Receive, Scope, Send, open_asgi_server


def lifespan_app(
    *, startup: Message | None = None, shutdown: Message | None = None, hang: bool = False
) -> tuple[list[str], ASGIApp]:
    """An application whose lifespan answers with ``startup`` and ``shutdown`` (complete by default)
    and keeps ``state["db"]``; its websocket side sends the state it sees. Returns (events, app)."""
    events: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            events.append((await receive())["type"])
            scope["state"]["db"] = ["connection"]
            await send(startup or {"type": "lifespan.startup.complete"})
            events.append((await receive())["type"])
            if hang:
                await trio.sleep_forever()
            await send(shutdown or {"type": "lifespan.shutdown.complete"})
            return
        assert scope["type"] == "websocket"
        scope["state"]["mine"] = True  # (a copy: the next connection does not see it)
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": repr(sorted(scope["state"].items()))})
        scope["state"]["db"].append("shared")  # (a shallow copy: the list is the lifespan's)

    return events, app


async def test_startup_then_serving_with_the_state_then_shutdown() -> None:
    events, app = lifespan_app()
    async with open_asgi_server(app, "127.0.0.1", 0) as server:
        assert events == ["lifespan.startup"]
        seen = []
        for _ in range(2):
            async with open_websocket("127.0.0.1", server.port, "/") as ws:
                seen.append(await ws.receive_text())
        assert events == ["lifespan.startup"]
    assert events == ["lifespan.startup", "lifespan.shutdown"]
    assert seen[0] == "[('db', ['connection']), ('mine', True)]"
    assert seen[1] == "[('db', ['connection', 'shared']), ('mine', True)]"


async def test_a_startup_failure_stops_the_server_from_starting(caplog: pytest.LogCaptureFixture) -> None:
    events, app = lifespan_app(startup={"type": "lifespan.startup.failed", "message": "no database"})
    entered = False
    with pytest.raises(LifespanFailed) as failed:
        async with open_asgi_server(app, "127.0.0.1", 0):
            entered = True
    assert not entered
    assert str(failed.value) == "application startup failed: no database"
    assert events == ["lifespan.startup"]  # (no shutdown for what never started)
    assert [r for r in caplog.records if r.exc_info] == []


async def raising(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        raise ValueError("lifespan? never heard of it")
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "served"})


async def test_auto_goes_on_without_a_lifespan_the_app_does_not_speak(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trio_ws")
    async with (
        open_asgi_server(raising, "127.0.0.1", 0) as server,
        open_websocket("127.0.0.1", server.port, "/") as ws,
    ):
        assert await ws.receive_text() == "served"
    (record,) = [r for r in caplog.records if "lifespan" in r.getMessage()]
    assert record.levelno == logging.INFO
    assert record.exc_info is None
    assert "ValueError: lifespan? never heard of it" in record.getMessage()


async def test_on_requires_the_lifespan(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(LifespanFailed) as failed:
        async with open_asgi_server(raising, "127.0.0.1", 0, lifespan="on"):
            pass
    assert str(failed.value) == "application startup failed: ValueError: lifespan? never heard of it"
    assert len([r for r in caplog.records if r.exc_info]) == 1  # the application's traceback, once


async def test_off_never_calls_the_lifespan() -> None:
    events, app = lifespan_app()
    async with (
        open_asgi_server(app, "127.0.0.1", 0, lifespan="off") as server,
        open_websocket("127.0.0.1", server.port, "/") as ws,
    ):
        assert await ws.receive_text() == "[('mine', True)]"  # an empty state: no startup ran
    assert events == []


async def test_a_shutdown_failure_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    _, app = lifespan_app(shutdown={"type": "lifespan.shutdown.failed", "message": "disk full"})
    async with open_asgi_server(app, "127.0.0.1", 0):
        pass
    assert "application shutdown failed: disk full" in [r.getMessage() for r in caplog.records]


async def test_a_shutdown_that_hangs_is_cancelled_after_close_timeout(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    events, app = lifespan_app(hang=True)
    async with open_asgi_server(app, listeners=[], close_timeout=4):
        start = trio.current_time()
    assert trio.current_time() - start == pytest.approx(4)
    assert events == ["lifespan.startup", "lifespan.shutdown"]
    assert any("took longer than 4" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"lifespan": "yes"}, "lifespan is one of"),
        ({"root_path": "api"}, "root_path starts with '/'"),
        ({"keep_alive_timeout": 0}, "keep_alive_timeout must be more than 0"),
        ({"max_body_size": -1}, "max_body_size must be 0 or more"),
    ],
)
async def test_bad_settings_are_refused_before_anything_starts(
    settings: dict[str, Any], message: str
) -> None:
    events, app = lifespan_app()
    with pytest.raises(ValueError, match=message):
        async with open_asgi_server(app, "127.0.0.1", 0, **settings):
            pass
    assert events == []


async def test_lifespan_messages_out_of_turn_raise_in_the_app() -> None:
    raised: list[str] = []

    async def attempt(send: Send, message: Message) -> None:
        try:
            await send(message)
        except RuntimeError as exc:
            raised.append(str(exc))
        else:
            raised.append(f"nothing for {message['type']}")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "lifespan"
        assert (await receive())["type"] == "lifespan.startup"
        await attempt(send, {"type": "lifespan.shutdown.complete"})  # (the startup is not answered)
        await attempt(send, {"type": "http.response.start", "status": 200})
        await send({"type": "lifespan.startup.complete"})
        await attempt(send, {"type": "lifespan.startup.complete"})  # (answered already)
        assert (await receive())["type"] == "lifespan.shutdown"
        await send({"type": "lifespan.shutdown.complete"})

    async with open_asgi_server(app, listeners=[], lifespan="on"):
        pass
    assert raised == [
        "expected lifespan.startup.complete or lifespan.startup.failed, got 'lifespan.shutdown.complete'",
        "expected lifespan.startup.complete or lifespan.startup.failed, got 'http.response.start'",
        "expected lifespan.shutdown.complete or lifespan.shutdown.failed, got 'lifespan.startup.complete'",
    ]
