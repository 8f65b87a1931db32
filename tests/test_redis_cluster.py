"""Rooms over a real Redis Cluster (six redis-server processes, tests/redis_cluster.py) with sharded
pub/sub: a room's traffic touches only the primary serving its channel's slot, processes receive
only their own rooms, joins are batched and confirmed, and a frozen primary costs only its own
rooms (docs/broadcast.md, docs/scaling.md)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator

import pytest
import trio
from hub_members import backend, history_member, member, running, until
from redis_cluster import NODE_TIMEOUT_MS, RedisClusterNodes, key_slot

from trio_ws import Hub, RedisClusterBackend
from trio_ws.app._redis_cluster_topology import ClusterTopology
from trio_ws.app._redis_cluster_topology import key_slot as library_key_slot
from trio_ws.testing import open_test_client


def test_a_rooms_channel_is_its_own_hash_tag_and_a_prefix_with_braces_is_refused() -> None:
    assert RedisClusterBackend(prefix="chat:").channel("lobby") == "{chat:lobby}"
    with pytest.raises(ValueError, match="prefix"):
        RedisClusterBackend(prefix="chat{1}:")
    with pytest.raises(ValueError, match="host:port"):
        RedisClusterBackend(startup_nodes=["10.0.0.2"])


def test_the_topology_gives_each_slot_its_online_primary() -> None:
    def node(ip: bytes, role: bytes, health: bytes = b"online") -> dict[bytes, object]:
        return {
            b"ip": ip,
            b"endpoint": ip,
            b"port": 7000,
            b"tls-port": 7100,
            b"role": role,
            b"health": health,
        }

    shards = [
        {
            b"slots": [0, 99, 200, 16383],
            b"nodes": [node(b"10.0.0.1", b"master"), node(b"10.0.0.4", b"replica")],
        },
        {
            b"slots": [100, 199],
            b"nodes": [node(b"10.0.0.2", b"master", b"failed"), node(b"10.0.0.5", b"replica")],
        },
    ]
    topology = ClusterTopology.from_shards(shards)
    assert topology.owners[0] == topology.owners[99] == topology.owners[16383] == ("10.0.0.1", 7000)
    assert topology.owners[100] is topology.owners[199] is None  # its primary failed: no owner yet
    assert not topology.complete
    assert topology.primaries == {("10.0.0.1", 7000)}
    assert len(topology.nodes) == 4
    assert ClusterTopology.from_shards(shards, tls=True).owners[0] == ("10.0.0.1", 7100)  # rediss://


async def test_the_slot_of_a_name_is_the_one_redis_computes(redis_cluster: RedisClusterNodes) -> None:
    rng = random.Random(7)
    names = ["", "{}", "{a", "a}", "}{a}", "{a}{b}", "{{a}}", "x{}y{z}", "€{é}", "trio_ws:room"]
    names += ["".join(rng.choice("ab{}:é€ ") for _ in range(rng.randrange(12))) for _ in range(150)]
    for name in names:
        answer = int(await redis_cluster.cli(redis_cluster.ports[0], "cluster", "keyslot", name))
        assert library_key_slot(name.encode()) == answer == key_slot(name), name


async def test_rooms_on_every_shard_reach_every_member_of_both_processes_once(
    redis_cluster: RedisClusterNodes,
) -> None:
    hub_a, hub_b = Hub(backend(redis_cluster)), Hub(backend(redis_cluster))
    rooms = await redis_cluster.one_room_per_primary("spread")
    assert len(set(rooms)) == 3  # three primaries, a room on each
    async with (
        running(hub_a, hub_b),
        member(hub_a, *rooms.values()) as alice,
        member(hub_b, *rooms.values()) as bob,
    ):
        for port, room in rooms.items():  # each primary carries its own room's channel, no other
            assert await redis_cluster.shard_channels(port) == {"{trio_ws:" + room + "}"}
        before = {port: await redis_cluster.calls(port, "spublish") for port in rooms}
        expected = []
        for i in range(20):
            for room in rooms.values():
                await hub_a.publish(room, f"{room} a{i}")
                await hub_b.publish(room, f"{room} b{i}")
                expected += [f"{room} a{i}", f"{room} b{i}"]
        for someone in (alice, bob):
            await someone.wait_count(len(expected))
            assert sorted(someone.got) == sorted(expected)  # each once
            for room in rooms.values():  # in publication order, room by room
                assert [text for text in someone.got if text.startswith(room + " ")] == [
                    text for text in expected if text.startswith(room + " ")
                ]
        for port in rooms:  # each room's publications went to its own primary only
            assert await redis_cluster.calls(port, "spublish") - before[port] == 40
        assert hub_a.stats.publish_errors == hub_b.stats.publish_errors == 0


async def test_processes_in_disjoint_rooms_receive_none_of_each_others_traffic(
    redis_cluster: RedisClusterNodes,
) -> None:
    hub_a, hub_b = Hub(backend(redis_cluster)), Hub(backend(redis_cluster))
    rooms_a = await redis_cluster.one_room_per_primary("a")
    rooms_b = await redis_cluster.one_room_per_primary("b")
    async with running(hub_a, hub_b), member(hub_b, *rooms_b.values()) as bob:
        async with member(hub_a, *rooms_a.values()) as alice:
            for i in range(30):
                for room in rooms_a.values():
                    await hub_a.publish(room, f"{room}:{i}")
                for room in rooms_b.values():
                    await hub_b.publish(room, f"{room}:{i}")
            await alice.wait_count(90)
            await bob.wait_count(90)
            # What a process receives from Redis is its own rooms' traffic, and nothing else.
            assert hub_a.stats.received == hub_b.stats.received == 90
        # Alice, the last member of her rooms here, left: they are unsubscribed, and the next
        # messages to them reach no process. Carol's room is on the same primary as one of them.
        port, room = next(iter(rooms_a.items()))
        keep = await redis_cluster.room_on(port, "keep")
        async with member(hub_a, keep) as carol:
            channels = {"{trio_ws:" + keep + "}", "{trio_ws:" + rooms_b[port] + "}"}

            async def only_carols_and_bobs() -> bool:
                return await redis_cluster.shard_channels(port) == channels

            await until(only_carols_and_bobs)
            await hub_b.publish(room, "nobody")  # on the same primary, published before the marker:
            await hub_b.publish(keep, "marker")  # had it reached this process, it would come first
            await carol.wait_for("marker")
            assert hub_a.stats.received == 91
            assert carol.got == ["marker"]


async def test_a_burst_of_joins_is_one_round_trip_per_primary(redis_cluster: RedisClusterNodes) -> None:
    cluster_backend = backend(redis_cluster, health_interval=60)  # no health PING meanwhile
    async with running(Hub(cluster_backend)):
        primaries = list(await redis_cluster.primaries())
        pings = {port: await redis_cluster.calls(port, "ping") for port in primaries}
        subscribes = {port: await redis_cluster.calls(port, "ssubscribe") for port in primaries}
        rooms = [f"burst{i}" for i in range(300)]
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for room in rooms:
                    nursery.start_soon(cluster_backend.subscribe, [room])
        assert cluster_backend.subscribed_rooms == set(rooms)
        channels = {"{trio_ws:" + room + "}" for room in rooms}
        assert set().union(*[await redis_cluster.shard_channels(port) for port in primaries]) == channels
        slots = {key_slot(channel) for channel in channels}
        sent = [await redis_cluster.calls(port, "ssubscribe") - subscribes[port] for port in primaries]
        assert sum(sent) == len(slots)  # one SSUBSCRIBE per slot, each slot once
        for port in primaries:  # the barriers: one for the first join, one for the rest
            assert await redis_cluster.calls(port, "ping") - pings[port] <= 3
        cluster_backend.unsubscribe(rooms)

        async def none_left() -> bool:
            return not any([await redis_cluster.shard_channels(port) for port in primaries])

        await until(none_left)
        assert cluster_backend.subscribed_rooms == set()


async def test_a_member_rejoining_fast_never_misses_a_message_published_after_its_join(
    redis_cluster: RedisClusterNodes,
) -> None:
    hub, other = Hub(backend(redis_cluster)), Hub(backend(redis_cluster))
    async with running(hub, other):
        for i in range(40):
            # Each block leaves and the next one joins back at once: the join may come while the
            # SUNSUBSCRIBE is on its way.
            async with member(hub, "r") as someone:
                await (other if i % 2 else hub).publish("r", f"m{i}")  # from another process, or this one
                await someone.wait_for(f"m{i}")
        assert hub.stats.publish_errors == other.stats.publish_errors == 0


@contextlib.asynccontextmanager
async def no_failover(cluster: RedisClusterNodes) -> AsyncIterator[None]:
    """A primary frozen for a while is not failed over (the node timeout is a minute meanwhile)."""
    await cluster.set_everywhere("cluster-node-timeout", "60000")
    try:
        yield
    finally:
        await cluster.set_everywhere("cluster-node-timeout", str(NODE_TIMEOUT_MS))


async def test_publishes_to_a_frozen_primary_fail_fast_and_other_shards_go_on(
    redis_cluster: RedisClusterNodes,
) -> None:
    # The health check waits a minute: here the first publication that times out is what tells.
    cluster_backend = backend(redis_cluster, publish_timeout=0.5, health_interval=60)
    hub = Hub(cluster_backend, queue_size=10_000)
    rooms = await redis_cluster.one_room_per_primary("frozen")
    (frozen, room), *others = rooms.items()
    async with no_failover(redis_cluster), running(hub), member(hub, *rooms.values()) as alice:
        redis_cluster.freeze(frozen)
        try:
            with trio.fail_after(3):  # 20 publications: not 20 times publish_timeout
                for i in range(20):
                    errors = hub.stats.publish_errors
                    await hub.publish(room, f"lost{i}")
                    assert hub.stats.publish_errors == errors + 1  # none is taken while frozen
            assert hub.stats.publish_timeouts == 1  # the first; the others failed fast
            assert not cluster_backend.ready.is_set()
            for _, other in others:  # the other primaries' rooms are not affected
                await hub.publish(other, f"{other} meanwhile")
                await alice.wait_for(f"{other} meanwhile")
            assert hub.stats.publish_errors == 20
        finally:
            redis_cluster.thaw(frozen)
        with trio.fail_after(10):
            await cluster_backend.ready.wait()
        await hub.publish(room, "after")
        await alice.wait_for("after")
        # Only the one that timed out may have been delivered: the others were never sent.
        assert {text for text in alice.got if text.startswith("lost")} <= {"lost0"}


async def test_the_health_check_notices_a_frozen_primary_and_its_return(
    redis_cluster: RedisClusterNodes,
) -> None:
    cluster_backend = backend(redis_cluster, health_interval=0.1, health_timeout=0.2)
    hub = Hub(cluster_backend)
    rooms = await redis_cluster.one_room_per_primary("health")
    (frozen, room), (_, other), _ = rooms.items()
    async with no_failover(redis_cluster), running(hub), member(hub, other) as bob:
        redis_cluster.freeze(frozen)
        try:
            with trio.fail_after(5):
                while cluster_backend.ready.is_set():  # noqa: ASYNC110 - cleared by the health check
                    await trio.sleep(0.02)
            with trio.fail_after(1):
                await hub.publish(room, "refused")
            assert hub.stats.publish_errors == 1
            assert hub.stats.publish_timeouts == 0  # refused at once, never sent
            await hub.publish(other, "taken")  # another primary's room: taken and delivered
            await bob.wait_for("taken")
            assert hub.stats.publish_errors == 1
        finally:
            redis_cluster.thaw(frozen)
        with trio.fail_after(10):
            await cluster_backend.ready.wait()
        await hub.publish(room, "taken too")
        assert hub.stats.publish_errors == 1


async def keys_by_primary(cluster: RedisClusterNodes, tag: str) -> dict[int, set[str]]:
    """Each primary's keys with the hash tag ``tag``."""
    return {
        port: {key for key in (await cluster.cli(port, "keys", "*")).split() if key.startswith(tag)}
        for port in await cluster.primaries()
    }


async def test_a_rooms_history_lives_on_its_primary_and_a_member_of_another_process_recovers_it(
    redis_cluster: RedisClusterNodes,
) -> None:
    hub_a, hub_b = (Hub(backend(redis_cluster), history_size=100, envelope=True) for _ in range(2))

    handler = history_member(hub_b, "story")  # a member of "story" on hub_b, from a position
    async with running(hub_a, hub_b):
        async with open_test_client(handler) as ws:
            epoch = (await ws.receive_json(timeout=10))["epoch"]
            positions = [await hub_a.publish("story", f"m{i}") for i in range(1, 6)]
            assert [position.offset for position in positions if position] == [1, 2, 3, 4, 5]
            for i in range(1, 6):  # live, through the shard channel, with their offsets
                envelope = {"room": "story", "offset": i, "epoch": epoch, "data": f"m{i}"}
                assert await ws.receive_json(timeout=10) == envelope
        owner = await redis_cluster.owner(key_slot("{trio_ws:story}"))
        keys = await keys_by_primary(redis_cluster, "{trio_ws:story}")
        assert {"{trio_ws:story}:history", "{trio_ws:story}:meta"} <= keys.pop(owner)
        assert not any(keys.values())  # the room's keys are on its primary only
        async with open_test_client(handler, query_string=f"offset=2&epoch={epoch}") as ws:
            assert (await ws.receive_json(timeout=10))["recovered"] is True
            assert [(await ws.receive_json(timeout=10))["data"] for _ in range(3)] == ["m3", "m4", "m5"]
        assert hub_a.stats.publish_errors == hub_b.stats.publish_errors == 0


async def test_presence_across_two_processes_lives_on_the_rooms_primary(
    redis_cluster: RedisClusterNodes,
) -> None:
    hub_a, hub_b = Hub(backend(redis_cluster)), Hub(backend(redis_cluster))
    async with (
        running(hub_a, hub_b),
        member(hub_a, "lobby", info={"user": "ann"}),
        member(hub_b, "lobby", info={"user": "bob"}),
    ):
        for hub in (hub_a, hub_b):  # a join returns once its entry is written: no waiting
            found = sorted(m.info["user"] for m in await hub.presence("lobby"))
            assert found == ["ann", "bob"]
            assert await hub.presence_count("lobby") == 2
        owner = await redis_cluster.owner(key_slot("{trio_ws:lobby}"))
        keys = await keys_by_primary(redis_cluster, "{trio_ws:lobby}")
        assert keys.pop(owner) == {"{trio_ws:lobby}:presence", "{trio_ws:lobby}:presence:expiry"}
        assert not any(keys.values())
