"""Members of a hub's rooms, for the tests of rooms across processes: a test client whose handler
stays in its rooms until the client leaves, and the texts it receives, collected as they come; a
member of a room with history, from the position its client gives; hubs running with their backend
ready; a poll of another process's state."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import trio

from trio_ws import Hub, RedisClusterBackend, StreamPosition, WebSocket
from trio_ws.testing import open_test_client


def backend(cluster: Any, **options: Any) -> RedisClusterBackend:
    """A cluster backend for the test cluster (a ``RedisClusterNodes``). Its health check allows
    2 s for a PONG unless told otherwise: on two shared cores a busy test answers late."""
    return RedisClusterBackend(cluster.url, **{"health_timeout": 2.0, **options})


@contextlib.asynccontextmanager
async def running(*hubs: Hub) -> AsyncIterator[None]:
    """The hubs running, each backend ready."""
    async with contextlib.AsyncExitStack() as stack:
        for hub in hubs:
            await stack.enter_async_context(hub)
            with trio.fail_after(10):
                await ready(hub).wait()
        yield


def ready(hub: Hub) -> trio.Event:
    """The ``ready`` event of the hub's backend."""
    event = getattr(hub.backend, "ready", None)
    assert isinstance(event, trio.Event)
    return event


async def until(predicate: Callable[[], Awaitable[bool]]) -> None:
    """Poll another process's state (redis-server's, no event to wait on) until it holds."""
    with trio.fail_after(10):
        while not await predicate():  # noqa: ASYNC110 - another process's state
            await trio.sleep(0.02)


class Member:
    """What a member received, in order."""

    def __init__(self) -> None:
        self.got: list[str] = []
        self.arrived = trio.Event()

    def add(self, text: str) -> None:
        self.got.append(text)
        self.arrived.set()
        self.arrived = trio.Event()

    async def wait_for(self, text: str) -> None:
        with trio.fail_after(10):
            while text not in self.got:
                await self.arrived.wait()

    async def wait_count(self, count: int) -> None:
        with trio.fail_after(10):
            while len(self.got) < count:
                await self.arrived.wait()


def history_member(hub: Hub, room: str) -> Callable[[WebSocket], Awaitable[None]]:
    """A handler: a member of ``room`` on ``hub`` from the position in its query string
    (``?offset=...&epoch=...``), if any, until its client leaves."""

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        since = StreamPosition.from_client(ws.query_params.get("offset"), ws.query_params.get("epoch"))
        async with hub.subscribe(ws, room, since=since):
            async for _ in ws.iter_text():
                pass

    return handler


@contextlib.asynccontextmanager
async def member(hub: Hub, *rooms: str, info: Any = None) -> AsyncIterator[Member]:
    """A connection in ``rooms`` of ``hub`` (with ``info`` in their presence) for the block: entered
    once its join returned (so a message published from then on reaches it); it leaves them at the
    end of the block."""

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        async with hub.subscribe(ws, *rooms, info=info):
            await ws.send_text("in")
            async for _ in ws.iter_text():
                pass

    collected = Member()
    async with open_test_client(handler) as client, trio.open_nursery() as nursery:
        assert await client.receive_text(timeout=10) == "in"

        async def read() -> None:
            while True:
                collected.add(await client.receive_text(timeout=None))

        nursery.start_soon(read)
        yield collected
        nursery.cancel_scope.cancel()
