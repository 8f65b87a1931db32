"""Presence through a real redis-server: members of hubs in two processes (separate backends here,
and a real process killed with SIGKILL), join and leave notices between them, entries that expire
when their process dies, a Redis restart, and a Redis that is away or frozen."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers import free_port
from redis_server import Redis
from test_presence import Inbox, joined, member, notice

from trio_ws import Hub, Member, PresenceUnavailable, RedisBackend
from trio_ws.testing import open_test_client

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "tests" / "apps" / "presence_app.py"


def fast(url: str, **options: Any) -> RedisBackend:
    """A backend whose entries expire a second after their last heartbeat."""
    return RedisBackend(url, presence_ttl=1.0, presence_interval=0.2, **options)


@contextlib.asynccontextmanager
async def running(*hubs: Hub) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for hub in hubs:
            await stack.enter_async_context(hub)
            assert isinstance(hub.backend, RedisBackend)
            with trio.fail_after(10):
                await hub.backend.ready.wait()
        yield


async def until(predicate: Any, seconds: float = 10) -> None:
    """Poll Redis's state (through ``predicate()``) until it holds, with a deadline: entries expire
    on Redis's clock, and other processes change them."""
    with trio.fail_after(seconds):
        while not await predicate():  # noqa: ASYNC110 - Redis has no event to wait on
            await trio.sleep(0.05)


async def ids(hub: Hub, room: str) -> list[str]:
    return [m.client_id for m in await hub.presence(room)]


async def test_presence_across_two_hubs_with_their_info(redis: Redis) -> None:
    hub_a, hub_b = Hub(RedisBackend(redis.url)), Hub(RedisBackend(redis.url))
    async with (
        running(hub_a, hub_b),
        open_test_client(member(hub_a, "r", "s", info={"user": "ann"})) as ann,
    ):
        ann_id = await joined(ann)
        async with open_test_client(member(hub_b, "r", info={"user": "bob"})) as bob:
            bob_id = await joined(bob)
            # A join returns once its entries are in Redis: no waiting here.
            for hub in (hub_a, hub_b):
                found = await hub.presence("r")
                assert [(m.client_id, m.info) for m in found] == [
                    (ann_id, {"user": "ann"}),
                    (bob_id, {"user": "bob"}),
                ]
                assert await hub.presence_count("r") == 2
                assert await ids(hub, "s") == [ann_id]
            # The keys of a room share its hash tag (one cluster slot).
            keys = set((await redis.cli("keys", "*")).split())
            assert keys == {
                "{trio_ws:r}:presence",
                "{trio_ws:r}:presence:expiry",
                "{trio_ws:s}:presence",
                "{trio_ws:s}:presence:expiry",
            }
        # bob's connection is gone: its entry is removed at once (not left to expire).

        async def bob_gone() -> bool:
            return await ids(hub_a, "r") == [ann_id]

        await until(bob_gone, seconds=2)  # the ttl is 30 s here
        assert await hub_a.presence_count("s") == 1


@pytest.mark.parametrize(
    "info",
    [None, "ann", 42, 1.5, True, ["a", 1, None], {"user": "zoë 🎈", "nested": {"list": [1, {"x": None}]}}],
)
async def test_info_round_trips_through_redis(redis: Redis, info: Any) -> None:
    hub_a, hub_b = Hub(RedisBackend(redis.url)), Hub(RedisBackend(redis.url))
    async with running(hub_a, hub_b), open_test_client(member(hub_a, "r", info=info)) as client:
        client_id = await joined(client)
        [found] = await hub_b.presence("r")
        assert found == Member(client_id, info, found.joined_at)
        assert abs(found.joined_at - time.time()) < 60


async def test_join_and_leave_notices_between_processes(redis: Redis) -> None:
    hub_a, hub_b = Hub(RedisBackend(redis.url)), Hub(RedisBackend(redis.url))
    for hub in (hub_a, hub_b):  # configured alike in every process
        hub.configure_room("lobby", join_leave=True)
    async with (
        running(hub_a, hub_b),
        open_test_client(member(hub_a, "lobby", info={"user": "ann"})) as client,
    ):
        ann = Inbox(client)
        await ann.until(lambda inbox: inbox.client_id is not None and inbox.notices)
        assert ann.notices == [notice("join", "lobby", ann.client_id, {"user": "ann"})]
        async with open_test_client(member(hub_b, "lobby", info={"user": "bob"})) as bob:
            bob_id = await joined(bob)
            await ann.until(lambda inbox: len(inbox.notices) == 2)
            assert ann.notices[1] == notice("join", "lobby", bob_id, {"user": "bob"})  # from B
        await ann.until(lambda inbox: len(inbox.notices) == 3)
        assert ann.notices[2] == notice("leave", "lobby", bob_id, {"user": "bob"})
        # A room without join_leave sends none: a marker published after a join comes first (a
        # join returns once its notice is published).
        async with open_test_client(member(hub_a, "quiet")) as watcher:
            watch = Inbox(watcher)
            await watch.until(lambda inbox: inbox.client_id is not None)
            async with open_test_client(member(hub_b, "quiet")) as other:
                await joined(other)
                await hub_b.publish("quiet", ["marker"])
                await watch.until(lambda inbox: inbox.other)
            assert watch.other == [["marker"]]
            assert watch.notices == []


@contextlib.asynccontextmanager
async def presence_process(redis: Redis) -> AsyncIterator[tuple[trio.Process, dict[str, str]]]:
    """tests/apps/presence_app.py in a process of its own (importing this tree's trio_ws)."""
    env = {**os.environ, "REDIS_URL": redis.url, "PYTHONPATH": str(ROOT), "PRESENCE_TTL": "1.0"}
    process = await trio.lowlevel.open_process(
        [sys.executable, str(APP)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        seen = b""
        with trio.fail_after(20):
            while b"\n" not in seen:
                chunk = await process.stdout.receive_some()
                assert chunk, (seen + await process.stderr.receive_some()).decode()
                seen += chunk
        yield process, json.loads(seen.splitlines()[0])
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        await process.stdout.aclose()
        await process.stderr.aclose()


async def test_the_entries_of_a_killed_process_expire_and_its_members_are_announced_gone(
    redis: Redis,
) -> None:
    hub = Hub(fast(redis.url), join_leave=True)
    async with running(hub), open_test_client(member(hub, "r", info={"user": "ann"})) as client:
        ann = Inbox(client)
        await ann.until(lambda inbox: inbox.client_id is not None and inbox.notices)
        ours = (await hub.presence("r"))[0]
        async with presence_process(redis) as (process, theirs):
            assert set(await ids(hub, "r")) == {ann.client_id, theirs["dan"], theirs["eve"]}
            assert await ids(hub, "s") == [theirs["dan"]]  # a member in two rooms
            [dan] = [m for m in await hub.presence("r") if m.client_id == theirs["dan"]]
            assert dan.info == {"user": "dan", "pid": process.pid}
            await ann.until(lambda inbox: len(inbox.notices) == 3)  # their joins, through Redis
            process.send_signal(signal.SIGKILL)  # no leave, no cleanup: only the ttl
            await process.wait()

            async def only_ours() -> bool:
                return await ids(hub, "r") == [ann.client_id] and await hub.presence("s") == []

            await until(only_ours)
        # Our heartbeat found their entries expired, removed them, and told the room.
        await ann.until(lambda inbox: len(inbox.notices) == 5)
        left = {n["client_id"] for n in ann.notices[3:] if n["presence"] == "leave"}
        assert left == {theirs["dan"], theirs["eve"]}
        # Ours is older than the ttl and still there: the heartbeat rewrote it all along.
        assert time.time() - ours.joined_at > 1.0
        assert await ids(hub, "r") == [ann.client_id]

        # Room "s" has no member here: nobody removes its entries, its keys expire with them.
        async def s_keys_gone() -> bool:
            keys = ("{trio_ws:s}:presence", "{trio_ws:s}:presence:expiry")
            return (await redis.cli("exists", *keys)).strip() == "0"

        await until(s_keys_gone)


async def test_the_heartbeat_writes_the_entries_again_after_a_redis_restart(redis: Redis) -> None:
    hub = Hub(fast(redis.url))
    async with running(hub), open_test_client(member(hub, "r", info="ann")) as client:
        client_id = await joined(client)
        await redis.stop()
        await redis.start()  # empty: no persistence

        async def back() -> bool:
            with contextlib.suppress(PresenceUnavailable):
                return [(m.client_id, m.info) for m in await hub.presence("r")] == [(client_id, "ann")]
            return False

        await until(back)


async def test_presence_without_redis_raises_promptly(redis: Redis) -> None:
    backend = fast(redis.url, publish_timeout=0.5, health_interval=60)
    hub = Hub(backend)
    async with running(hub), open_test_client(member(hub, "r")) as client:
        client_id = await joined(client)
        redis.freeze()  # the connection stays up, nobody answers
        with trio.fail_after(0.5 + 1.0):
            with pytest.raises(PresenceUnavailable, match="did not answer"):
                await hub.presence("r")
        redis.thaw()
        assert await ids(hub, "r") == [client_id]
        await redis.stop()  # gone: the listener notices, the next queries fail at once

        async def refused() -> bool:
            with trio.fail_after(0.1), contextlib.suppress(PresenceUnavailable):
                await hub.presence_count("r")
                return False
            return True

        await until(refused)
        with trio.fail_after(0.1), pytest.raises(PresenceUnavailable):
            await hub.presence("r")


async def test_a_hub_that_never_reached_redis_raises_at_once() -> None:
    hub = Hub(RedisBackend(f"redis://127.0.0.1:{free_port()}/0"))
    async with hub:
        with trio.fail_after(0.5), pytest.raises(PresenceUnavailable):
            await hub.presence("r")
