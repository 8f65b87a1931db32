"""The history of rooms in a real redis-server: its keys (one hash tag per room, nothing for a room
without history), its ttl, the sharded publication a cluster uses, Redis away, a member that missed
live messages, a stream that went back in Redis (publications it lost) never given again as if
nothing was lost, and a member of a killed process recovering in another one."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import coredis
import pytest
import trio
from helpers import free_port
from hub_members import history_member as member
from redis_server import Redis
from test_history import envelope, notice

from trio_ws import Hub, RedisBackend, StreamPosition, open_websocket
from trio_ws.app._history_redis import RedisHistory
from trio_ws.protocol import PreparedMessage
from trio_ws.testing import open_test_client

APPS = Path(__file__).resolve().parent / "apps"


@contextlib.asynccontextmanager
async def running(redis: Redis, **options: Any) -> AsyncIterator[Hub]:
    backend = RedisBackend(redis.url, subscribe_timeout=options.pop("subscribe_timeout", 2.0))
    async with Hub(backend, **options) as hub:
        with trio.fail_after(10):
            await backend.ready.wait()
        yield hub


@contextlib.asynccontextmanager
async def client_of(redis: Redis) -> AsyncIterator[Any]:
    client: Any = coredis.Redis.from_url(redis.url)
    async with client:
        yield client


async def test_a_room_keeps_its_keys_under_one_hash_tag_and_a_plain_room_none(redis: Redis) -> None:
    async with running(redis) as hub, client_of(redis) as client:
        hub.configure_room("kept", history_size=3)
        assert await hub.publish("plain", "x") is None
        assert await client.dbsize() == 0  # a room without history: a plain PUBLISH, no key
        assert await redis.calls("evalsha") == 0
        await hub.publish("kept", "m0")  # loads the script (its first EVALSHA is refused)
        scripts = await redis.calls("evalsha")
        for i in range(1, 5):
            position = await hub.publish("kept", f"m{i}")
        assert position is not None and position.offset == 5
        keys = {bytes(key).decode() for key in await client.keys("*")}
        assert keys == {"{trio_ws:kept}:history", "{trio_ws:kept}:meta"}  # one slot in a cluster
        assert await client.xlen("{trio_ws:kept}:history") == 3  # trimmed to history_size
        assert await client.ttl("{trio_ws:kept}:history") == -1  # no history_ttl: kept until trimmed
        assert await redis.calls("evalsha") - scripts == 4  # one script per publication


async def test_a_backend_set_after_the_hub_was_made_keeps_the_history_in_redis(redis: Redis) -> None:
    hub = Hub(history_size=10)  # made at module level, the backend chosen by a command-line option
    hub.backend = RedisBackend(redis.url)
    async with hub:
        assert hub.backend is not None
        with trio.fail_after(10):
            await hub.backend.ready.wait()
        position = await hub.publish("r", "kept")
        assert position is not None and position.offset == 1
        assert hub.stats.publish_errors == 0
        assert (await redis.cli("XLEN", "{trio_ws:r}:history")).strip() == "1"
        with pytest.raises(RuntimeError, match="in use"):
            hub.backend = None
    with pytest.raises(TypeError, match="no history"):  # a backend that cannot keep the history
        Hub(history_size=10).backend = object()  # type: ignore[assignment]


async def test_a_history_expired_by_its_ttl_is_not_recovered(redis: Redis) -> None:
    async with (
        running(redis, history_size=100, history_ttl=0.5, envelope=True) as hub,
        client_of(redis) as client,
    ):
        position = await hub.publish("r", "m1")
        assert position is not None
        for key in ("{trio_ws:r}:history", "{trio_ws:r}:meta"):
            assert 0 < await client.pttl(key) <= 500
        async with open_test_client(member(hub, "r"), query_string=f"offset=0&epoch={position.epoch}") as c:
            assert (await c.receive_json(timeout=10))["recovered"] is True  # not expired yet
            assert (await c.receive_json(timeout=10))["data"] == "m1"
        with trio.fail_after(10):  # Redis expires the history: wait on Redis's state
            while await client.exists(["{trio_ws:r}:history", "{trio_ws:r}:meta"]):
                await trio.lowlevel.checkpoint()
        async with open_test_client(member(hub, "r"), query_string=f"offset=1&epoch={position.epoch}") as c:
            joined = await c.receive_json(timeout=10)
            assert joined["recovered"] is False
            assert (joined["offset"], joined["epoch"] != position.epoch) == (0, True)


async def test_the_script_publishes_with_spublish_for_a_cluster(redis: Redis) -> None:
    """A cluster backend publishes to a shard channel with the room's hash tag, in the same script."""
    cli = shutil.which("redis-cli")
    assert cli
    listener = await trio.lowlevel.open_process(
        [cli, "-p", str(redis.port), "ssubscribe", "{p:room}"], stdout=subprocess.PIPE
    )
    assert listener.stdout is not None
    try:
        async with client_of(redis) as client:
            with trio.fail_after(10):
                while (await client.pubsub_shardnumsub("{p:room}")).get(b"{p:room}") != 1:
                    await trio.lowlevel.checkpoint()
            history = RedisHistory("p:", publish_command="SPUBLISH")
            assert history.shard_channel("room") == "{p:room}"  # the hash tag of its keys
            message = PreparedMessage("sharded")
            position = await history.append(
                client, "room", "{p:room}", message, is_json=False, size=10, ttl=0
            )
            seen = b""
            with trio.fail_after(10):
                while b"sharded" not in seen:
                    seen += await listener.stdout.receive_some()
            assert f"h1:{position.epoch}:tsharded".encode() in seen
            page = await history.read(client, "room", since=StreamPosition(0, position.epoch), limit=0, ttl=0)
            assert [p.message.payload for p in page.publications] == [b"sharded"]
        assert await redis.calls("spublish") == 1
        assert await redis.calls("publish") == 0
    finally:
        listener.kill()
        await listener.wait()
        await listener.stdout.aclose()


async def test_while_redis_is_away_publishes_fail_fast_and_joins_are_not_recovered(redis: Redis) -> None:
    async with running(redis, history_size=100, envelope=True, subscribe_timeout=0.2) as hub:
        backend = hub.backend
        assert isinstance(backend, RedisBackend)
        position = await hub.publish("r", "before")
        assert position is not None
        await redis.stop()
        with trio.fail_after(10):
            while backend.ready.is_set():
                await trio.lowlevel.checkpoint()
        with trio.fail_after(1):
            assert await hub.publish("r", "refused") is None  # at once, counted, never sent
        assert (hub.stats.publish_errors, hub.stats.publish_timeouts) == (1, 0)
        async with open_test_client(member(hub, "r"), query_string=f"offset=1&epoch={position.epoch}") as c:
            # The history cannot be read: told so, with no position.
            assert await c.receive_json(timeout=10) == notice(None, None, False)
            await redis.start()
            with trio.fail_after(10):
                await backend.ready.wait()  # back, and the room subscribed
            after = await hub.publish("r", "after")
            assert after is not None and after.epoch != position.epoch  # Redis lost the stream
            assert await c.receive_json(timeout=10) == envelope(1, after.epoch, "after")
        assert hub.stats.not_recovered == 1


async def test_a_member_that_missed_live_messages_sees_the_gap_and_recovers_it(redis: Redis) -> None:
    """This process's connection to Redis drops while another process publishes: its member sees
    the offsets jump, comes back with its position, and gets exactly what it missed."""
    async with running(redis, history_size=100, envelope=True) as here, client_of(redis) as client:
        backend = here.backend
        assert isinstance(backend, RedisBackend)
        history = RedisHistory("trio_ws:")  # another process publishing, as its hub does

        async def publish_there(text: str) -> None:
            await history.append(
                client, "r", "trio_ws:r", PreparedMessage(text), is_json=False, size=100, ttl=0
            )

        async with open_test_client(member(here, "r")) as ws:
            epoch = (await ws.receive_json(timeout=10))["epoch"]
            await publish_there("m1")
            assert (await ws.receive_json(timeout=10))["offset"] == 1
            await redis.cli("client", "kill", "type", "pubsub")  # this process's listener only
            with trio.fail_after(10):
                while backend.ready.is_set():
                    await trio.lowlevel.checkpoint()
            for i in range(2, 6):  # while this process is not subscribed: they never reach it live
                await publish_there(f"m{i}")
            with trio.fail_after(10):
                await backend.ready.wait()
            await publish_there("m6")
            assert (await ws.receive_json(timeout=10))["offset"] == 6  # not 2: it knows it missed 2-5
        async with open_test_client(member(here, "r"), query_string=f"offset=1&epoch={epoch}") as ws:
            assert (await ws.receive_json(timeout=10))["recovered"] is True
            assert [(await ws.receive_json(timeout=10))["data"] for _ in range(5)] == [
                f"m{i}" for i in range(2, 7)
            ]


async def lose_the_last(redis: Redis, room: str, count: int) -> None:
    """Leave ``room``'s stream as Redis has it after losing its ``count`` last publications (a
    failover before they reached the replica, a restart from an older copy): entries and offset."""
    stream, meta = f"{{trio_ws:{room}}}:history", f"{{trio_ws:{room}}}:meta"
    offset = int(await redis.cli("HGET", meta, "offset"))
    await redis.cli("XDEL", stream, *(f"{offset - i}-0" for i in range(count)))
    await redis.cli("XSETID", stream, f"{offset - count}-0")  # its last id too, as the replica had it
    await redis.cli("HSET", meta, "offset", str(offset - count))


async def test_a_stream_behind_what_this_process_saw_is_not_taken_up_again(redis: Redis) -> None:
    """The process gave offsets 1..5; Redis lost 4 and 5. Neither its next join nor its next
    publication goes on from 3 (that would give 4 and 5 again, to other messages): a new epoch."""
    async with running(redis, history_size=100, envelope=True) as hub:
        epochs = {}
        for room in ("r", "s"):
            positions = [await hub.publish(room, f"m{i}") for i in range(1, 6)]
            epochs[room] = next(position.epoch for position in positions if position)
            assert positions == [StreamPosition(i, epochs[room]) for i in range(1, 6)]
            await lose_the_last(redis, room, 2)
        # A join first: told it missed some (not given m3 as if nothing else was missed).
        async with open_test_client(member(hub, "r"), query_string=f"offset=2&epoch={epochs['r']}") as ws:
            joined = await ws.receive_json(timeout=10)
            assert joined == notice(0, joined["epoch"], False)
            assert joined["epoch"] != epochs["r"]
            after = await hub.publish("r", "m6")
            assert after == StreamPosition(1, joined["epoch"])
            assert await ws.receive_json(timeout=10) == envelope(1, after.epoch, "m6")
        # A publication first: offset 1 of a new epoch, not 4 again.
        other = await hub.publish("s", "m6")
        assert other is not None and other.offset == 1 and other.epoch != epochs["s"]
        async with open_test_client(member(hub, "s"), query_string=f"offset=3&epoch={epochs['s']}") as ws:
            assert (await ws.receive_json(timeout=10))["recovered"] is False
        assert hub.stats.not_recovered == 2


async def test_a_live_offset_received_again_ends_the_epoch_of_its_stream(redis: Redis) -> None:
    """After Redis lost offsets 4 and 5, another process that never saw them is given 4 again (it
    cannot know). This process received 4 and 5 live: it ends the stream's epoch, so that no member
    coming back with 4 or 5 is given the new messages for the lost ones."""
    async with running(redis, history_size=100, envelope=True) as here, client_of(redis) as client:

        async def publish_there(history: RedisHistory, text: str) -> StreamPosition:
            message = PreparedMessage(text)
            return await history.append(client, "r", "trio_ws:r", message, is_json=False, size=100, ttl=0)

        async with open_test_client(member(here, "r")) as ws:
            epoch = (await ws.receive_json(timeout=10))["epoch"]
            before = RedisHistory("trio_ws:")  # a process that goes away after these
            for i in range(1, 6):
                await publish_there(before, f"m{i}")
            assert [(await ws.receive_json(timeout=10))["offset"] for _ in range(5)] == [1, 2, 3, 4, 5]
            await lose_the_last(redis, "r", 2)
            again = await publish_there(RedisHistory("trio_ws:"), "m6")  # one that saw nothing
            assert again == StreamPosition(4, epoch)
            assert await ws.receive_json(timeout=10) == envelope(4, epoch, "m6")  # 4 again, live
            with trio.fail_after(10):  # this process ends the epoch in Redis: wait on Redis's state
                while (await redis.cli("HGET", "{trio_ws:r}:meta", "epoch")).strip() == epoch:
                    await trio.lowlevel.checkpoint()
        for since in (3, 5):
            async with open_test_client(
                member(here, "r"), query_string=f"offset={since}&epoch={epoch}"
            ) as ws:
                joined = await ws.receive_json(timeout=10)
                assert joined["recovered"] is False and joined["epoch"] != epoch


def test_what_a_process_saw_live_tells_a_reused_offset_from_a_late_one() -> None:
    history = RedisHistory("p:")
    assert not any(history.saw_live("r", StreamPosition(offset, "e")) for offset in (1, 2, 3, 5, 6))
    assert not history.saw_live("r", StreamPosition(4, "e"))  # late (another connection): unknown
    assert history.saw_live("r", StreamPosition(6, "e"))  # received live before: given again
    assert not history.saw_live("r", StreamPosition(5, "e"))  # the epoch ends once
    assert not history.saw_live("r", StreamPosition(1, "f"))  # another epoch starts afresh
    assert not history.saw_live("r", StreamPosition(2, "f"))
    assert history.saw_live("r", StreamPosition(1, "f"))


@contextlib.asynccontextmanager
async def history_app(redis: Redis) -> AsyncIterator[tuple[int, trio.Process]]:
    """tests/apps/history_app.py served by the command line in a process of its own."""
    port = free_port()
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_ws", "history_app:router", "--port", str(port)],
        cwd=APPS,
        stderr=subprocess.PIPE,
        env={**os.environ, "REDIS_URL": redis.url, "PYTHONPATH": str(APPS.parent.parent)},
    )
    assert process.stderr is not None
    try:
        seen = b""
        with trio.fail_after(20):
            while b"serving history_app:router" not in seen:
                chunk = await process.stderr.receive_some()
                assert chunk, seen.decode()
                seen += chunk
        async with trio.open_nursery() as nursery:
            nursery.start_soon(Redis._drain, process.stderr)
            yield port, process
            nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            with trio.move_on_after(15):
                await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_member_of_a_killed_process_recovers_in_another_exactly_what_it_missed(redis: Redis) -> None:
    async with (
        history_app(redis) as (port_a, process_a),
        history_app(redis) as (port_b, _),
        running(redis, history_size=1000) as publisher,
    ):
        received: list[dict[str, Any]] = []
        killed = trio.Event()
        async with trio.open_nursery() as nursery:

            async def publish_all() -> None:
                for i in range(500):
                    if i == 300:
                        await killed.wait()  # the rest while it is away, at least these
                    await publisher.publish("room", i)

            async with open_websocket("127.0.0.1", port_a, "/rooms/room") as ws:
                joined = await ws.receive_json()
                assert joined["recovered"] is False
                nursery.start_soon(publish_all)
                while len(received) < 100:  # mid-stream: kill -9 its process
                    received.append(await ws.receive_json())
                process_a.kill()
                with trio.fail_after(10):
                    with contextlib.suppress(Exception):
                        while True:  # what was on its way before the kill
                            received.append(await ws.receive_json())
                killed.set()
            last = received[-1]
            query = f"?offset={last['offset']}&epoch={last['epoch']}"
            async with open_websocket("127.0.0.1", port_b, "/rooms/room" + query) as ws:
                again = await ws.receive_json()
                assert again == notice(last["offset"], last["epoch"], True, room="room")
                while len(received) < 500:
                    received.append(await ws.receive_json())
                await publisher.publish("room", "live")
                received.append(await ws.receive_json())
    assert [message["data"] for message in received] == [*range(500), "live"]
    assert [message["offset"] for message in received] == list(range(1, 502))
