"""Rooms over a real Redis Cluster when it changes: a primary killed (``kill -9``) and its replica
promoted, with what a member of a room with history recovers across it (everything, when the replica
had it; else it is told it cannot); a slot moved to another primary; and three processes with 1,000
members each, over 100 rooms, on the cluster and on a single Redis server (docs/scaling.md,
docs/broadcast.md#delivery)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from hub_members import backend, history_member, member, ready, running, until
from redis_cluster import NODE_TIMEOUT_MS, RedisClusterNodes, key_slot
from redis_server import Redis
from test_history import envelope, notice

from trio_ws import Hub, StreamPosition
from trio_ws.testing import open_test_client

ROOT = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "apps"

#: From ``kill -9`` of a primary to its rooms' messages reaching every process again, with the
#: cluster-node-timeout of these tests (1 s) and the backend's defaults: the failover itself
#: (about node timeout + 1 s: the other primaries agree it failed, the replica's election) plus
#: the backend's part (``refresh_interval``, 0.25 s, then one SSUBSCRIBE round trip).
FAILOVER_BOUND = NODE_TIMEOUT_MS / 1000 + 3.0


async def test_a_killed_primary_is_failed_over_and_only_its_rooms_pause(
    redis_cluster: RedisClusterNodes,
) -> None:
    hub_a = Hub(backend(redis_cluster, publish_timeout=2.0), queue_size=100_000)
    hub_b = Hub(backend(redis_cluster, publish_timeout=2.0), queue_size=100_000)
    rooms = await redis_cluster.one_room_per_primary("failover")
    (victim, room), *others = rooms.items()
    replica = await redis_cluster.replica_of(victim)
    async with (
        running(hub_a, hub_b),
        member(hub_a, *rooms.values()) as alice,
        member(hub_b, *rooms.values()) as bob,
    ):
        await hub_a.publish(room, "before")
        await alice.wait_for("before")
        await bob.wait_for("before")
        resumed = trio.Event()
        steady: list[str] = []

        async def other_shards() -> None:
            """Publish to the other primaries' rooms all along, each message awaited by both
            members before the next: none may fail, none may be late."""
            i = 0
            while not resumed.is_set():
                for _, other in others:
                    text = f"{other} {i}"
                    await hub_b.publish(other, text)
                    with trio.fail_after(2):
                        await alice.wait_for(text)
                        await bob.wait_for(text)
                    steady.append(text)
                i += 1

        failed: list[float] = []  # how long each refused publication took
        async with trio.open_nursery() as nursery:
            nursery.start_soon(other_shards)
            with trio.fail_after(10):  # the other shards' publisher is under way
                while len(steady) < 10:
                    await trio.lowlevel.checkpoint()
            redis_cluster.kill(victim)
            killed = trio.current_time()
            with trio.fail_after(FAILOVER_BOUND):
                while True:
                    errors = hub_a.stats.publish_errors
                    started = trio.current_time()
                    await hub_a.publish(room, f"gap {len(failed)}")
                    if hub_a.stats.publish_errors == errors:
                        break  # taken: hub_a's subscriber is on the promoted replica
                    failed.append(trio.current_time() - started)
                    # The cluster is failing over (other processes): poll it, not our code.
                    await trio.sleep(0.01)
                await alice.wait_for(f"gap {len(failed)}")
                # The other process resubscribes on its own; once it has, both hear both.
                await ready(hub_b).wait()
                await hub_a.publish(room, "resumed a")
                await hub_b.publish(room, "resumed b")
                for someone in (alice, bob):
                    await someone.wait_for("resumed a")
                    await someone.wait_for("resumed b")
            took = trio.current_time() - killed
            resumed.set()
        print(f"traffic resumed {took:.2f} s after the kill; {len(failed)} refused meanwhile")
        assert failed, "the primary was killed: some publications must have been refused"
        assert max(failed) < 0.5  # each failed fast (publish_timeout is 2 s)
        assert hub_a.stats.publish_errors == len(failed)  # and each was counted
        assert (await redis_cluster.primaries()).get(replica)  # the replica serves the slots now
        channel = "{trio_ws:" + room + "}"
        assert channel in await redis_cluster.shard_channels(replica)
        # The other shards' rooms went on all along, from before the kill until after the resume.
        assert hub_b.stats.publish_errors == 0
        assert len(steady) >= 20
        # Nothing delivered twice; what failed fast was never delivered.
        for someone in (alice, bob):
            assert len(someone.got) == len(set(someone.got))
            gap = [text for text in someone.got if text.startswith("gap ")]
            assert gap in ([], [f"gap {len(failed)}"])


async def publish_until_taken(hub: Hub, room: str, text: str) -> StreamPosition:
    """Publish ``text`` to a room with history until its primary takes it: each refusal is counted,
    never delivered (the room's shard is failing over, in other processes: poll it)."""
    with trio.fail_after(FAILOVER_BOUND):
        while True:
            position = await hub.publish(room, text)
            if position is not None:
                return position
            await trio.sleep(0.01)


def history_hub(cluster: RedisClusterNodes) -> Hub:
    """A hub with history in every room, that knows every node (its first may be the one killed)."""
    options = {"publish_timeout": 2.0, "startup_nodes": cluster.startup_nodes}
    return Hub(backend(cluster, **options), history_size=1000, envelope=True)


@pytest.mark.parametrize("replicated", [True, False], ids=["replicated", "lost_in_the_failover"])
async def test_a_member_back_after_a_failover_gets_what_it_missed_or_is_told_it_cannot(
    redis_cluster: RedisClusterNodes, replicated: bool
) -> None:
    hub_a, hub_b = history_hub(redis_cluster), history_hub(redis_cluster)
    primary = next(iter(await redis_cluster.primaries()))
    replica = await redis_cluster.replica_of(primary)
    room = await redis_cluster.room_on(primary, "kept" if replicated else "lost")
    async with running(hub_a, hub_b):
        async with open_test_client(history_member(hub_a, room)) as alice:
            epoch = (await alice.receive_json(timeout=10))["epoch"]
            for i in range(1, 6):
                await hub_b.publish(room, f"m{i}")
            got = [await alice.receive_json(timeout=10) for _ in range(5)]
            assert got == [envelope(i, epoch, f"m{i}", room) for i in range(1, 6)]
        # Alice left with (5, epoch). Five more; then the primary is killed at once.
        if not replicated:
            await redis_cluster.cut_off(replica, primary)  # what the primary takes now is not replicated
        try:
            positions = [await hub_b.publish(room, f"m{i}") for i in range(6, 11)]
            assert positions == [StreamPosition(i, epoch) for i in range(6, 11)]
            if replicated:  # everything the primary took is on its replica
                assert await redis_cluster.replicated(primary, "{trio_ws:" + room + "}") == 1
            redis_cluster.kill(primary)
        finally:
            redis_cluster.thaw(replica)
        killed = trio.current_time()
        after: list[StreamPosition | None] = [await publish_until_taken(hub_b, room, "m11")]
        print(f"the room took publications again {trio.current_time() - killed:.2f} s after the kill")
        after += [await hub_b.publish(room, f"m{i}") for i in range(12, 16)]
        assert (await redis_cluster.primaries()).get(replica)
        query = f"offset=5&epoch={epoch}"
        async with open_test_client(history_member(hub_b, room), query_string=query) as alice:
            joined = await alice.receive_json(timeout=10)
            if replicated:  # exactly what it missed, in order, then the live ones
                assert after == [StreamPosition(i, epoch) for i in range(11, 16)]
                assert joined == notice(5, epoch, True, room=room)
                got = [await alice.receive_json(timeout=10) for _ in range(10)]
                assert got == [envelope(i, epoch, f"m{i}", room) for i in range(6, 16)]
                assert (hub_b.stats.recovered, hub_b.stats.not_recovered) == (1, 0)
            else:
                # m6..m10 were lost with the primary: hub_b had been given offsets 6..10, and the
                # promoted replica's stream stops at 5. Its first publication there starts a new
                # epoch instead of giving offsets 6..10 again, and Alice is told she missed some.
                assert after[0] is not None
                new = after[0].epoch
                assert new != epoch
                assert after == [StreamPosition(i, new) for i in range(1, 6)]
                assert joined == notice(5, new, False, room=room)
                assert (hub_b.stats.recovered, hub_b.stats.not_recovered) == (0, 1)
            live = await hub_b.publish(room, "live")
            assert live is not None
            assert await alice.receive_json(timeout=10) == envelope(live.offset, live.epoch, "live", room)


async def test_a_process_that_saw_lost_publications_live_ends_their_epoch_when_it_sees_them_reused(
    redis_cluster: RedisClusterNodes,
) -> None:
    """The publications lost in a failover were published by a process that is gone, and the next
    ones by a process that knows nothing of them: the offsets come again. A process whose member
    received the lost ones live sees them come again and ends the stream's epoch, so that no member
    is given the new messages for the ones it missed."""
    hub_a = history_hub(redis_cluster)
    primary = next(iter(await redis_cluster.primaries()))
    replica = await redis_cluster.replica_of(primary)
    room = await redis_cluster.room_on(primary, "reused")
    meta = "{trio_ws:" + room + "}:meta"
    async with running(hub_a), open_test_client(history_member(hub_a, room)) as bob:
        epoch: str = (await bob.receive_json(timeout=10))["epoch"]
        hub_b = history_hub(redis_cluster)
        async with running(hub_b):  # a publisher that goes away with what it knew
            for i in range(1, 6):
                await hub_b.publish(room, f"m{i}")
            await redis_cluster.cut_off(replica, primary)
            try:
                for i in range(6, 11):
                    await hub_b.publish(room, f"m{i}")
                got = [await bob.receive_json(timeout=10) for _ in range(10)]  # live, before the kill
                assert got == [envelope(i, epoch, f"m{i}", room) for i in range(1, 11)]
                redis_cluster.kill(primary)
            finally:
                redis_cluster.thaw(replica)
        await redis_cluster.wait_promoted(replica)
        channel = "{trio_ws:" + room + "}"

        async def hub_a_subscribed_there() -> bool:
            return channel in await redis_cluster.shard_channels(replica)

        await until(hub_a_subscribed_there)
        hub_c = history_hub(redis_cluster)
        async with running(hub_c):
            # hub_c cannot know: the promoted replica's stream stops at 5, it gives offset 6 again.
            first = await publish_until_taken(hub_c, room, "m11")
            assert first == StreamPosition(6, epoch)
            assert await bob.receive_json(timeout=10) == envelope(6, epoch, "m11", room)  # offset went back

            async def epoch_ended() -> bool:
                return (await redis_cluster.cli(replica, "hget", meta, "epoch")).strip() != epoch

            await until(epoch_ended)  # hub_a saw offset 6 before: it ended the epoch
            for since in (5, 10):  # positions before and after the lost ones: neither is recovered
                query = f"offset={since}&epoch={epoch}"
                async with open_test_client(history_member(hub_c, room), query_string=query) as again:
                    joined = await again.receive_json(timeout=10)
                    assert joined["recovered"] is False
                    assert joined["epoch"] not in (None, epoch)
            second = await hub_c.publish(room, "m12")
            assert second is not None and second.offset == 1 and second.epoch != epoch
            assert await bob.receive_json(timeout=10) == envelope(1, second.epoch, "m12", room)


async def test_a_room_whose_slot_moves_follows_it_to_its_new_primary(
    redis_cluster: RedisClusterNodes,
) -> None:
    # The topology is read again on its own only once a minute: what follows the move here is the
    # source's SUNSUBSCRIBE (the subscribers), or a MOVED (a publisher with no member in the room).
    hubs = [Hub(backend(redis_cluster, refresh_interval=60, topology_interval=60)) for _ in range(3)]
    hub_a, hub_b, publisher = hubs
    rooms = await redis_cluster.one_room_per_primary("moving")
    (source, room), (target, other), _ = rooms.items()
    channel = "{trio_ws:" + room + "}"
    async with (
        running(hub_a, hub_b, publisher),
        member(hub_a, room, other) as alice,
        member(hub_b, room) as bob,
    ):
        await publisher.publish(room, "before")
        await alice.wait_for("before")
        await bob.wait_for("before")
        await redis_cluster.move_slot(key_slot(channel), target)

        # The source unsubscribes its clients from the slot's channels (SUNSUBSCRIBE): each
        # process reads the topology again and subscribes on the new primary.
        async def both_on_target() -> bool:
            answer = (await redis_cluster.cli(target, "pubsub", "shardnumsub", channel)).split()
            return answer == [channel, "2"]

        await until(both_on_target)
        assert channel not in await redis_cluster.shard_channels(source)
        published = await redis_cluster.calls(target, "spublish")
        for i in range(10):
            await hub_a.publish(room, f"a{i}")
            await hub_b.publish(room, f"b{i}")
            await hub_b.publish(other, f"other {i}")  # on the target all along
        expected = [f"{p}{i}" for i in range(10) for p in "ab"]
        for someone in (alice, bob):  # each once, in publication order
            await someone.wait_for("b9")
            assert [text for text in someone.got if re.fullmatch(r"[ab]\d", text)] == expected
        await alice.wait_for("other 9")
        assert [text for text in alice.got if text.startswith("other ")] == [f"other {i}" for i in range(10)]
        assert await redis_cluster.calls(target, "spublish") - published == 30  # all on the target
        assert hub_a.stats.publish_errors == hub_b.stats.publish_errors == 0
        # The publisher still sends the room's messages to the source: MOVED, refused (counted,
        # never delivered), and the topology is read again; the next ones go to the target.
        with trio.fail_after(10):
            while True:
                errors = publisher.stats.publish_errors
                await publisher.publish(room, f"moved {errors}")
                if publisher.stats.publish_errors == errors:
                    break
        assert publisher.stats.publish_errors >= 1
        assert publisher.stats.publish_timeouts == 0
        taken = f"moved {publisher.stats.publish_errors}"
        for someone in (alice, bob):
            await someone.wait_for(taken)
            assert [text for text in someone.got if text.startswith("moved ")] == [taken]


async def members_in_three_processes(*target: str) -> list[dict[str, int]]:
    """Three processes of tests/apps/room_members.py (1,000 members over 100 rooms each, ten
    messages from each process to each room); what each one's members received."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, str(APPS / "room_members.py"), *target, "--processes", "3"]
    processes = [
        await trio.lowlevel.open_process(
            [*command, "--index", str(index)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        for index in range(3)
    ]
    buffers = [b""] * 3

    async def line(index: int) -> bytes:
        stdout = processes[index].stdout
        assert stdout is not None
        while b"\n" not in buffers[index]:
            chunk = await stdout.receive_some()
            assert chunk, f"process {index} ended: {buffers[index]!r}"
            buffers[index] += chunk
        text, _, buffers[index] = buffers[index].partition(b"\n")
        return text

    try:
        with trio.fail_after(90):
            for index in range(3):
                assert await line(index) == b"READY"
            for process in processes:  # every process's members are in: publish
                assert process.stdin is not None
                await process.stdin.send_all(b"GO\n")
            reports = [json.loads(await line(index)) for index in range(3)]
            for process in processes:
                await process.wait()
        return reports
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()


def assert_every_member_got_every_message_once(reports: list[dict[str, int]]) -> None:
    for report in reports:
        assert report == {
            "complete": 1000,  # every member had its room's 30 messages (10 from each process)
            "duplicates": 0,
            "missing": 0,
            "out_of_order": 0,
            "publish_errors": 0,
            "received": 3000,  # 100 rooms x 30 messages, each once in each process
        }


async def test_three_processes_of_a_thousand_members_over_a_cluster(
    redis_cluster: RedisClusterNodes,
) -> None:
    reports = await members_in_three_processes("--cluster", redis_cluster.url)
    assert_every_member_got_every_message_once(reports)


async def test_three_processes_of_a_thousand_members_over_one_redis(redis: Redis) -> None:
    assert_every_member_got_every_message_once(await members_in_three_processes("--redis", redis.url))
