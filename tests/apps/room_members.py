"""One process of many with a hub and ``--members`` members spread over ``--rooms`` rooms, for the
tests of rooms across processes (tests/test_redis_cluster_failover.py):

    python room_members.py (--cluster URL | --redis URL) --index 0 --processes 3

Each member is a lightweight subscriber in one room: what the hub uses of a connection (its nursery
and ``send_prepared``), recording what it is sent, so that three processes of 1,000 fit on two
shared cores (the WebSocket side is the other tests' business). The process prints ``READY`` once
every member's join returned, publishes ``--messages`` messages to every room once it reads ``GO``
on stdin, then waits until every member has every process's messages (or ``--deadline`` passes)
and prints what its members received as one JSON line: how many members got everything, and the
duplicates, missing and out-of-order messages it saw.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any, cast

import trio

from trio_ws import Hub, RedisBackend, RedisClusterBackend, WebSocket
from trio_ws.protocol import PreparedMessage


async def main(args: argparse.Namespace) -> None:
    # Generous timeouts: on two shared cores a busy process answers its PONGs late, and a health
    # check that gives up would refuse publications (that is the health check's test, not this one).
    timeouts: dict[str, Any] = {"health_timeout": 10.0, "publish_timeout": 20.0, "subscribe_timeout": 30.0}
    if args.cluster:
        backend: Any = RedisClusterBackend(args.cluster, **timeouts)
    else:
        backend = RedisBackend(args.redis, **timeouts)
    hub = Hub(backend, queue_size=10_000)
    rooms = [f"room{i}" for i in range(args.rooms)]
    expected = args.processes * args.messages
    got: list[list[str]] = [[] for _ in range(args.members)]
    done = trio.Event()
    complete = 0

    class Subscriber:
        """Stands in for a connection: the hub's sender task hands it every message."""

        def __init__(self, index: int, nursery: trio.Nursery) -> None:
            self.index = index
            self.nursery = nursery

        async def send_prepared(self, message: PreparedMessage, *, direct: bool = False) -> None:
            nonlocal complete
            texts = got[self.index]
            texts.append(message.payload.decode())
            if len(texts) == expected:
                complete += 1
                if complete == args.members:
                    done.set()
            await trio.lowlevel.checkpoint()

    async def one_member(index: int, joined: trio.MemorySendChannel[None]) -> None:
        async with trio.open_nursery() as own:  # the connection's nursery: the hub's sender runs there
            ws = cast(WebSocket, Subscriber(index, own))
            async with hub.subscribe(ws, rooms[index % len(rooms)]):
                await joined.send(None)
                await done.wait()
            own.cancel_scope.cancel()

    async with hub, trio.open_nursery() as nursery:
        with trio.fail_after(30):
            await backend.ready.wait()
        joined_send, joined_receive = trio.open_memory_channel[None](args.members)
        for index in range(args.members):
            nursery.start_soon(one_member, index, joined_send)
        with trio.fail_after(60):
            for _ in range(args.members):
                await joined_receive.receive()
        print("READY", flush=True)
        stdin = trio.lowlevel.FdStream(0)
        assert (await stdin.receive_some()).strip() == b"GO"
        start = trio.current_time()

        async def publish(room: str) -> None:  # in order in each room, the rooms side by side
            for i in range(args.messages):
                await hub.publish(room, f"{args.index}:{i}:{room}")

        async with trio.open_nursery() as publishers:
            for room in rooms:
                publishers.start_soon(publish, room)
        print(f"published in {trio.current_time() - start:.2f} s", file=sys.stderr, flush=True)
        with trio.move_on_after(args.deadline):
            await done.wait()
        print(f"delivered in {trio.current_time() - start:.2f} s", file=sys.stderr, flush=True)
        duplicates = missing = out_of_order = 0
        for index, texts in enumerate(got):
            room = rooms[index % len(rooms)]
            want = {f"{p}:{i}:{room}" for p in range(args.processes) for i in range(args.messages)}
            counts = Counter(texts)
            duplicates += sum(n - 1 for n in counts.values() if n > 1)
            missing += len(want - counts.keys())
            for p in range(args.processes):
                mine = [int(text.split(":")[1]) for text in texts if text.startswith(f"{p}:")]
                out_of_order += mine != sorted(mine)
        report = {
            "complete": complete,
            "duplicates": duplicates,
            "missing": missing,
            "out_of_order": out_of_order,
            "publish_errors": hub.stats.publish_errors,
            "received": hub.stats.received,
        }
        print(json.dumps(report), flush=True)
        done.set()
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--cluster", help="a node of the Redis Cluster (RedisClusterBackend)")
    target.add_argument("--redis", help="the Redis server (RedisBackend)")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--deadline", type=float, default=30)
    trio.run(main, parser.parse_args())
    sys.exit(0)
