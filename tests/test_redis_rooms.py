"""Rooms through a real redis-server, per room: a process receives only the rooms it has members in,
a join returns once its room's messages reach it, and publications across a Redis restart or freeze
are delivered as documented (docs/broadcast.md, "Delivery")."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import trio
import trio.testing
from redis_server import Redis

from trio_ws import Hub, RedisBackend, WebSocket
from trio_ws.testing import TestClient, open_test_client


def member(hub: Hub, room: str) -> Any:
    """A handler driven by its client: "join" enters ``room`` (answered "in" once the join
    returned), "leave" leaves it (answered "out")."""

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        async for command in ws.iter_text():
            assert command == "join"
            async with hub.subscribe(ws, room):
                await ws.send_text("in")
                assert await ws.receive_text() == "leave"
            await ws.send_text("out")

    return handler


async def joined(client: TestClient) -> None:
    await client.send_text("join")
    assert await client.receive_text(timeout=10) == "in"


async def until(predicate: Any) -> None:
    """Poll another process's state (redis-server's) until ``predicate()`` holds, with a deadline."""
    with trio.fail_after(10):
        while not await predicate():  # noqa: ASYNC110 - redis-server has no event to wait on
            await trio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(*hubs: Hub) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for hub in hubs:
            await stack.enter_async_context(hub)
            assert isinstance(hub.backend, RedisBackend)
            with trio.fail_after(10):
                await hub.backend.ready.wait()
        yield


async def test_hubs_with_disjoint_rooms_receive_none_of_each_others_traffic(redis: Redis) -> None:
    hub_a, hub_b = Hub(RedisBackend(redis.url)), Hub(RedisBackend(redis.url))
    async with (
        running(hub_a, hub_b),
        open_test_client(member(hub_a, "a")) as client_a,
        open_test_client(member(hub_b, "b")) as client_b,
    ):
        await joined(client_a)
        await joined(client_b)
        assert await redis.channels() == {"trio_ws:a", "trio_ws:b"}
        for i in range(50):
            await hub_a.publish("a", f"a{i}")
            await hub_b.publish("b", f"b{i}")
        # Markers published after all the rest: another room's traffic would have come before them.
        await hub_a.publish("a", "end")
        await hub_b.publish("b", "end")
        for client, room in ((client_a, "a"), (client_b, "b")):
            for i in range(50):
                assert await client.receive_text(timeout=10) == f"{room}{i}"
            assert await client.receive_text(timeout=10) == "end"
        assert hub_a.stats.received == hub_b.stats.received == 51  # their own rooms' only
        # The last member of "a" leaves: its process unsubscribes.
        await client_a.send_text("leave")
        assert await client_a.receive_text(timeout=10) == "out"

        async def only_b() -> bool:
            return await redis.channels() == {"trio_ws:b"}

        await until(only_b)
        await hub_b.publish("a", "nobody")
        await hub_b.publish("b", "end again")
        assert await client_b.receive_text(timeout=10) == "end again"
        assert hub_a.stats.received == 51


async def test_a_burst_of_joins_is_subscribed_in_a_few_commands(redis: Redis) -> None:
    backend = RedisBackend(redis.url)
    async with running(Hub(backend)):
        before = await redis.calls("subscribe")
        rooms = [f"room{i}" for i in range(300)]
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for room in rooms:
                    nursery.start_soon(backend.subscribe, [room])
        assert backend.subscribed_rooms == set(rooms)
        assert len(await redis.channels()) == 300
        assert await redis.calls("subscribe") - before <= 3  # one for the first, one for the rest
        backend.unsubscribe(rooms)
        before = await redis.calls("unsubscribe")

        async def none_left() -> bool:
            return not await redis.channels()

        await until(none_left)
        assert await redis.calls("unsubscribe") - before <= 2


async def test_a_member_rejoining_fast_never_misses_a_message_published_after_its_join(
    redis: Redis,
) -> None:
    hub, other = Hub(RedisBackend(redis.url)), Hub(RedisBackend(redis.url))
    async with running(hub, other), open_test_client(member(hub, "r")) as client:
        await joined(client)
        for i in range(100):
            # Leave and join back to back: the join may come while the UNSUBSCRIBE is on its way.
            await client.send_text("leave")
            await client.send_text("join")
            assert await client.receive_text(timeout=10) == "out"
            assert await client.receive_text(timeout=10) == "in"
            await (other if i % 2 else hub).publish("r", f"m{i}")  # from another process, or this one
            assert await client.receive_text(timeout=10) == f"m{i}"
        assert hub.stats.publish_errors == other.stats.publish_errors == 0


class Collected(list[str]):
    """The texts a member received, as they come."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = trio.Event()

    async def wait_for(self, text: str) -> None:
        with trio.fail_after(10):
            while text not in self:
                await self.arrived.wait()


@contextlib.asynccontextmanager
async def collected(hub: Hub) -> AsyncIterator[Collected]:
    """A member of room "r" whose messages are collected as they come."""
    got = Collected()
    async with open_test_client(member(hub, "r")) as client, trio.open_nursery() as nursery:
        await joined(client)

        async def read() -> None:
            while True:
                got.append(await client.receive_text(timeout=None))
                got.arrived.set()
                got.arrived = trio.Event()

        nursery.start_soon(read)
        yield got
        nursery.cancel_scope.cancel()


async def test_every_publish_that_returned_success_across_a_redis_restart_is_delivered(
    redis: Redis,
) -> None:
    backend = RedisBackend(redis.url)
    hub = Hub(backend, queue_size=100_000)
    async with running(hub), collected(hub) as got:
        sent: list[str] = []
        restarted = trio.Event()
        after_restart = 0

        async def publisher() -> None:
            nonlocal after_restart
            i = 0
            while after_restart < 200:
                errors = hub.stats.publish_errors
                await hub.publish("r", f"m{i}")
                if hub.stats.publish_errors == errors:
                    sent.append(f"m{i}")
                    after_restart += restarted.is_set()
                i += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(publisher)
            with trio.fail_after(10):
                while len(sent) < 50:
                    await trio.lowlevel.checkpoint()
            await redis.stop()
            await redis.start()
            restarted.set()
        assert hub.stats.publish_errors > 0  # some were refused while Redis was away
        await hub.publish("r", "end")  # after all the rest: by now they have arrived, or never will
        await got.wait_for("end")
        missing = [text for text in sent if text not in got]
        assert not missing, f"{len(missing)} of {len(sent)} returned success and never came"
        assert len(got) == len(set(got))


async def test_publishes_fail_fast_while_redis_is_frozen(redis: Redis) -> None:
    # The health check waits a minute: here the first publication that times out is what tells.
    backend = RedisBackend(redis.url, publish_timeout=1.0, health_interval=60)
    hub = Hub(backend, queue_size=10_000)
    async with running(hub), collected(hub) as got:
        await hub.publish("r", "before")
        await got.wait_for("before")
        redis.freeze()
        failed: list[str] = []
        with trio.fail_after(4):  # 20 publications: not 20 times publish_timeout
            for i in range(20):
                errors = hub.stats.publish_errors
                await hub.publish("r", f"m{i}")
                assert hub.stats.publish_errors == errors + 1  # none is taken while frozen
                failed.append(f"m{i}")
        assert not backend.ready.is_set()
        assert hub.stats.publish_timeouts == 1  # the first; the others failed fast
        redis.thaw()
        with trio.fail_after(10):
            await backend.ready.wait()
        await hub.publish("r", "after")
        await got.wait_for("after")
        # Only the one that timed out may have been delivered: the others were never sent.
        assert set(got) - {"before", "after"} <= {"m0"}


async def test_the_health_check_notices_a_frozen_redis_and_its_return(redis: Redis) -> None:
    backend = RedisBackend(redis.url, health_interval=0.1, health_timeout=0.2)
    hub = Hub(backend)
    async with running(hub):
        redis.freeze()
        with trio.fail_after(5):
            while backend.ready.is_set():  # noqa: ASYNC110 - cleared by the health check's task
                await trio.sleep(0.02)
        with trio.fail_after(1):
            await hub.publish("r", "refused")
        assert hub.stats.publish_errors == 1
        assert hub.stats.publish_timeouts == 0  # refused at once, never sent
        redis.thaw()
        with trio.fail_after(10):
            await backend.ready.wait()
        await hub.publish("r", "taken")
        assert hub.stats.publish_errors == 1


async def test_a_publication_whose_connection_fails_on_its_way_is_a_timeout(redis: Redis) -> None:
    """Redis is frozen with the publication sent, then killed: the connection fails before any
    answer. Whether Redis ran it cannot be known (a Redis Cluster primary killed mid-traffic had run
    such a one, its replica showed), so it is counted as a timeout (it may have been delivered),
    never as refused (never sent); the next ones fail at once."""
    backend = RedisBackend(redis.url, publish_timeout=10.0, health_interval=60)
    hub = Hub(backend)
    async with running(hub):
        await hub.publish("r", "first")  # the command connection is open
        redis.freeze()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hub.publish, "r", "on its way")
            await trio.testing.wait_all_tasks_blocked()  # written to the frozen server, unanswered
            await redis.stop()  # kill -9
        assert (hub.stats.publish_errors, hub.stats.publish_timeouts) == (1, 1)
        assert not backend.ready.is_set()
        with trio.fail_after(1):
            await hub.publish("r", "refused")  # at once: never sent
        assert (hub.stats.publish_errors, hub.stats.publish_timeouts) == (2, 1)
