"""Rooms across processes through a real redis-server (Debian's redis-server, started here on a free
port; ``.ci/run`` installs it): two server processes, Redis restarted mid-test, ``--workers``; and the
options both Redis backends take."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from helpers import Chat, free_port
from redis_server import Redis

from trio_ws import Hub, RedisBackend, RedisClusterBackend, open_websocket
from trio_ws.app._redis_common import RedisOptions, RedisSettings

APPS = Path(__file__).resolve().parent / "apps"
CHAT = Path(__file__).resolve().parent.parent / "examples" / "chat.py"


def test_both_backends_take_the_same_options_checked_at_once() -> None:
    assert RedisOptions.__optional_keys__ == set(attrs.fields_dict(RedisSettings))
    for backend in (RedisBackend, RedisClusterBackend):
        assert backend(publish_timeout=2.5).settings == RedisSettings(publish_timeout=2.5)
        with pytest.raises(ValueError, match="publish_timeout must be a positive number"):
            backend(publish_timeout=0)
        with pytest.raises(ValueError, match="presence_interval"):
            backend(presence_ttl=10, presence_interval=10)
        with pytest.raises(TypeError, match="publish_timout"):
            backend(publish_timout=1)  # type: ignore[call-arg]


@contextlib.asynccontextmanager
async def app(redis: Redis, *args: str) -> AsyncIterator[int]:
    """The redis_app router served by the command line; yields its port."""
    port = free_port()
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_ws", "redis_app:router", "--port", str(port), *args],
        cwd=APPS,
        stderr=subprocess.PIPE,
        env={**os.environ, "REDIS_URL": redis.url},
    )
    assert process.stderr is not None
    seen = b""
    workers = int(args[args.index("--workers") + 1]) if "--workers" in args else 1
    try:
        with trio.fail_after(20):
            while seen.count(b"serving redis_app:router") < workers:
                chunk = await process.stderr.receive_some()
                assert chunk, seen.decode()
                seen += chunk
        async with trio.open_nursery() as nursery:
            nursery.start_soon(Redis._drain, process.stderr)
            yield port
            process.send_signal(signal.SIGINT)
            with trio.fail_after(15):
                await process.wait()
            nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def wait_for_subscribers(redis: Redis, count: int) -> None:
    """Until ``count`` hubs are subscribed again. The hubs are in other processes and Redis has no
    blocking "wait for subscribers" command, so this one probe polls (bounded by the deadline)."""
    with trio.fail_after(20):
        while await redis.subscribers() < count:  # noqa: ASYNC110 - another process's state
            await trio.sleep(0.05)


async def test_two_server_processes_share_rooms_and_survive_a_redis_restart(redis: Redis) -> None:
    async with (
        app(redis) as port_a,
        app(redis) as port_b,
        open_websocket("127.0.0.1", port_a, "/rooms/x") as alice,
        open_websocket("127.0.0.1", port_b, "/rooms/x") as bob,
        open_websocket("127.0.0.1", port_b, "/rooms/y") as carol,
    ):
        for ws in (alice, bob, carol):
            assert "joined" in await ws.receive_json()
        await alice.send_text("hello from process A")
        for ws in (alice, bob):
            message = await ws.receive_json()
            assert message["text"] == "hello from process A"
        await bob.send_text("and back from B")
        assert (await alice.receive_json())["text"] == "and back from B"
        assert (await bob.receive_json())["text"] == "and back from B"
        # Redis goes away and comes back on the same port: the hubs reconnect and resubscribe.
        await redis.stop()
        await redis.start()
        await wait_for_subscribers(redis, 2)
        await alice.send_text("after the restart")
        with trio.fail_after(10):
            assert (await bob.receive_json())["text"] == "after the restart"
        assert (await alice.receive_json())["text"] == "after the restart"
        await carol.send_text("room y")
        assert (await carol.receive_json())["text"] == "room y"  # Redis has passed it on by now
        await alice.send_text("room x again")
        # Had room y's message reached bob, it would come first: Redis keeps the order it published in.
        assert (await bob.receive_json())["text"] == "room x again"


async def test_workers_of_the_command_line_see_each_other_through_redis(redis: Redis) -> None:
    async with app(redis, "--workers", "2") as port, contextlib.AsyncExitStack() as stack:
        by_pid: dict[int, Any] = {}
        for _ in range(100):  # the kernel spreads connections over the two workers
            ws = await stack.enter_async_context(open_websocket("127.0.0.1", port, "/rooms/w"))
            by_pid.setdefault((await ws.receive_json())["pid"], ws)
            if len(by_pid) == 2:
                break
        assert len(by_pid) == 2
        (pid_1, first), (pid_2, second) = by_pid.items()
        await first.send_text("across workers")
        with trio.fail_after(10):
            while True:  # second may also hold messages of the other members: find ours
                message = await second.receive_json()
                if message["text"] == "across workers":
                    break
        assert message["pid"] == pid_1 != pid_2


async def test_a_hub_in_this_process_with_async_with(redis: Redis) -> None:
    backend = RedisBackend(redis.url)
    hub = Hub(backend)
    async with hub:
        with trio.fail_after(10):
            await backend.ready.wait()
        from trio_ws.testing import open_test_client

        async def handler(ws: Any) -> None:
            await ws.accept()
            async with hub.subscribe(ws, "t"):
                await ws.send_text("in")
                await ws.receive_text()

        async with open_test_client(handler) as client:
            assert await client.receive_text(timeout=5) == "in"
            await hub.publish("t", "through redis")
            assert await client.receive_text(timeout=5) == "through redis"
            assert hub.stats.received == 1
        await redis.stop()
        await hub.publish("t", "lost")  # Redis is down: at most once, counted
        assert hub.stats.publish_errors == 1


@contextlib.asynccontextmanager
async def chat_example(redis: Redis) -> AsyncIterator[int]:
    port = free_port()
    process = await trio.lowlevel.open_process(
        [sys.executable, str(CHAT), "--port", str(port), "--redis", redis.url], stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        with trio.fail_after(20):
            seen = b""
            while b"chat server" not in seen:
                chunk = await process.stdout.receive_some()
                assert chunk, seen.decode()
                seen += chunk
        yield port
        process.send_signal(signal.SIGINT)
        with trio.fail_after(15):
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.stdout.aclose()


async def test_two_chat_example_processes_share_a_room_through_redis(redis: Redis) -> None:
    async with chat_example(redis) as port_a, chat_example(redis) as port_b:
        await wait_for_subscribers(redis, 2)
        with trio.fail_after(20):
            async with open_websocket("127.0.0.1", port_a, "/ws/garden?name=ann") as ann_ws:
                ann = Chat(ann_ws)
                await ann.until(lambda: ("join", "ann") in ann.presence)
                async with open_websocket("127.0.0.1", port_b, "/ws/garden?name=bob") as bob_ws:
                    bob = Chat(bob_ws)
                    await bob.until(lambda: bob.who is not None)
                    assert bob.who == ["ann", "bob"]  # who is in the room, in both processes
                    await ann.until(lambda: ("join", "bob") in ann.presence)  # from B, through Redis
                    await ann.ws.send_text("hello across processes")
                    assert await bob.next() == {"from": "ann", "text": "hello across processes"}
