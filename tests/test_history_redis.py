"""The history of rooms in a real redis-server: its keys (one hash tag per room, nothing for a room
without history), its ttl, the sharded publication a cluster uses, Redis away, a member that missed
live messages, and a member of a killed process recovering in another one."""

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
import trio
from helpers import free_port
from redis_server import Redis
from test_history import envelope, notice

from trio_ws import Hub, RedisBackend, StreamPosition, WebSocket, open_websocket
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


def member(hub: Hub, room: str) -> Any:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        since = StreamPosition.from_client(ws.query_params.get("offset"), ws.query_params.get("epoch"))
        async with hub.subscribe(ws, room, since=since):
            async for _ in ws.iter_text():
                pass

    return handler


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
                for i in range(400):
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
                while len(received) < 400:
                    received.append(await ws.receive_json())
                await publisher.publish("room", "live")
                received.append(await ws.receive_json())
    assert [message["data"] for message in received] == [*range(400), "live"]
    assert [message["offset"] for message in received] == list(range(1, 402))
