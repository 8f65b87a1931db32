"""The history of rooms and the recovery of missed messages, one suite run against both histories:
the in-memory hub's and a real redis-server's (``world``). A member that comes back with the
position it last saw gets exactly what it missed, in order, then the live messages; when the
history cannot cover it, it is told so."""

from __future__ import annotations

import contextlib
import json
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
import websockets.sync.client as ws_sync
from helpers import free_port
from redis_server import Redis

from trio_ws import Hub, RedisBackend, Router, StreamPosition, Subscription, WebSocket, open_websocket_server
from trio_ws.app._history import MemoryHistory
from trio_ws.protocol import PreparedMessage
from trio_ws.testing import TestClient, open_test_client


class World:
    """Hubs on one history: in memory, or in a redis-server of the test's own."""

    def __init__(self, kind: str, nursery: trio.Nursery, redis: Redis | None) -> None:
        self.kind = kind
        self.nursery = nursery  # the hubs run in it (the fixture's: the test's task cannot own them)
        self.redis = redis

    async def hub(self, **options: Any) -> Hub:
        if self.redis is None:
            return Hub(**options)
        backend = RedisBackend(self.redis.url, subscribe_timeout=options.pop("subscribe_timeout", 2.0))
        hub = Hub(backend, **options)
        await self.nursery.start(self._run, hub)
        with trio.fail_after(10):
            await backend.ready.wait()
        return hub

    @staticmethod
    async def _run(hub: Hub, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with hub:
            task_status.started()
            await trio.sleep_forever()

    async def received(self, hub: Hub, count: int) -> None:
        """Until ``hub`` has received ``count`` messages from Redis (in memory: delivered at once)."""
        if self.redis is not None:
            with trio.fail_after(10):
                while hub.stats.received < count:
                    await trio.lowlevel.checkpoint()

    def around_reads(
        self,
        monkeypatch: pytest.MonkeyPatch,
        hub: Hub,
        before: Callable[[], Awaitable[None]],
        after: Callable[[], Awaitable[None]],
    ) -> None:
        """Run ``before`` and ``after`` around each read of the history: while a member joins,
        between its subscription to the live messages and the end of its history read."""
        if self.redis is None:
            original = MemoryHistory.read

            async def memory_read(history: MemoryHistory, room: str, **options: Any) -> Any:
                await before()
                page = await original(history, room, **options)
                await after()
                return page

            monkeypatch.setattr(MemoryHistory, "read", memory_read)
            return
        backend = hub.backend
        assert isinstance(backend, RedisBackend)
        backend_read = backend.read

        async def redis_read(room: str, **options: Any) -> Any:
            await before()
            page = await backend_read(room, **options)
            await after()
            return page

        monkeypatch.setattr(backend, "read", redis_read)


@pytest.fixture(params=["memory", "redis"])
async def world(request: pytest.FixtureRequest) -> AsyncIterator[World]:
    async with trio.open_nursery() as nursery:
        redis = None
        if request.param == "redis":
            redis = Redis(free_port(), nursery)
            await redis.start()
        async with trio.open_nursery() as hubs:
            yield World(request.param, hubs, redis)
            hubs.cancel_scope.cancel()
        if redis is not None and redis.process is not None:
            await redis.stop()
        nursery.cancel_scope.cancel()


class Member:
    """A handler joining ``rooms``, with the position of its query string (``?offset=&epoch=``,
    ``&recent=``); it keeps the subscriptions it got."""

    def __init__(self, hub: Hub, *rooms: str) -> None:
        self.hub = hub
        self.rooms = rooms
        self.subscriptions: list[Subscription] = []
        self.joined = trio.Event()  # set (and replaced) at each join

    async def wait_joined(self, count: int) -> None:
        with trio.fail_after(10):
            while len(self.subscriptions) < count:
                await self.joined.wait()

    async def __call__(self, ws: WebSocket) -> None:
        await ws.accept()
        query = ws.query_params
        since: Any = StreamPosition.from_client(query.get("offset"), query.get("epoch"))
        if "positions" in query:  # several rooms: {room: [offset, epoch]}
            since = {room: StreamPosition(*at) for room, at in json.loads(query["positions"]).items()}
        async with self.hub.subscribe(
            ws, *self.rooms, since=since, recent=int(query.get("recent", "0"))
        ) as sub:
            self.subscriptions.append(sub)
            self.joined.set()
            self.joined = trio.Event()
            async for _ in ws.iter_text():
                pass


def back_at(position: StreamPosition | dict[str, Any], **extra: Any) -> str:
    """The query string of a client coming back at ``position``."""
    if isinstance(position, StreamPosition):
        position = {"offset": position.offset, "epoch": position.epoch}
    fields = {"offset": position["offset"], "epoch": position["epoch"], **extra}  # as a client keeps them
    return "&".join(f"{key}={value}" for key, value in fields.items())


async def envelopes(client: TestClient, count: int) -> list[dict[str, Any]]:
    return [await client.receive_json(timeout=10) for _ in range(count)]


def notice(offset: int | None, epoch: str | None, recovered: bool, room: str = "r") -> dict[str, Any]:
    """The envelope's first message in a room: where the member stands, and whether it was recovered."""
    return {"room": room, "offset": offset, "epoch": epoch, "recovered": recovered}


def envelope(offset: int, epoch: str, data: Any, room: str = "r") -> dict[str, Any]:
    """A message of the room in its envelope."""
    return {"room": room, "offset": offset, "epoch": epoch, "data": data}


def offsets(messages: list[dict[str, Any]]) -> list[int]:
    return [message["offset"] for message in messages]


async def test_a_member_back_after_500_messages_gets_them_in_order_then_the_live_ones(world: World) -> None:
    hub = await world.hub(history_size=1000, envelope=True)  # queue_size stays 64: history is not queued
    member = Member(hub, "r")
    async with open_test_client(member) as client:
        first = await client.receive_json(timeout=10)
        epoch = first["epoch"]
        assert first == notice(0, epoch, False)
        for i in range(10):
            await hub.publish("r", {"n": i})
        seen = await envelopes(client, 10)
    assert seen[-1] == envelope(10, epoch, {"n": 9})
    for i in range(10, 510):  # while it is away
        await hub.publish("r", {"n": i})
    async with open_test_client(member, query_string=back_at(seen[-1])) as client:
        assert await client.receive_json(timeout=10) == notice(10, epoch, True)
        missed = await envelopes(client, 500)
        assert offsets(missed) == list(range(11, 511))
        assert [message["data"]["n"] for message in missed] == list(range(10, 510))
        assert {message["epoch"] for message in missed} == {epoch}
        await hub.publish("r", {"n": "live"})
        # Straight after the last one missed: nothing came twice.
        assert await client.receive_json(timeout=10) == envelope(511, epoch, {"n": "live"})
    subscription = member.subscriptions[-1]
    assert subscription.recovered
    assert subscription.replayed == 500
    assert subscription.position == StreamPosition(510, epoch)
    assert (hub.stats.recovered, hub.stats.not_recovered, hub.stats.replayed) == (1, 0, 500)


async def test_messages_published_while_a_member_joins_are_neither_lost_nor_doubled(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = await world.hub(history_size=100, envelope=True)
    positions = [await hub.publish("r", f"m{i}") for i in range(10)]  # offsets 1-10, nobody in the room
    assert positions[-1] is not None
    epoch = positions[-1].epoch
    published = 10

    async def publish(count: int) -> None:
        nonlocal published
        for _ in range(count):
            await hub.publish("r", f"m{published}")
            published += 1
        await world.received(hub, published - 10)  # they have reached the hub: held for the member

    # While the member joins: 11-15 are published once its live subscription is in place and before
    # its history is read (so they are in both), 16-20 after the read (live only).
    world.around_reads(monkeypatch, hub, before=lambda: publish(5), after=lambda: publish(5))
    member = Member(hub, "r")
    async with open_test_client(member, query_string=back_at(StreamPosition(5, epoch))) as client:
        assert await client.receive_json(timeout=10) == notice(5, epoch, True)
        got = await envelopes(client, 15)
        assert offsets(got) == list(range(6, 21))
        assert [message["data"] for message in got] == [f"m{i}" for i in range(5, 20)]
        # A late live copy of one it was replayed (Redis sends the channel and the history on two
        # connections: the copy may come after the history) is dropped.
        hub.deliver_local("r", PreparedMessage("late copy"), remote=True, position=StreamPosition(12, epoch))
        await hub.publish("r", "live")
        assert await client.receive_json(timeout=10) == envelope(21, epoch, "live")
    subscription = member.subscriptions[-1]
    assert subscription.recovered
    assert subscription.replayed == 10  # 6-15 from the history; 16-20 were held live
    assert subscription.position == StreamPosition(15, epoch)


async def test_beyond_the_history_the_member_is_told_it_was_not_recovered(world: World) -> None:
    hub = await world.hub(history_size=10, envelope=True)
    member = Member(hub, "r")
    positions = [await hub.publish("r", f"m{i}") for i in range(1, 22)]  # offsets 1-21: 12-21 kept
    top = positions[-1]
    assert top is not None
    epoch = top.epoch

    async def join(query: str) -> TestClient:
        return await stack.enter_async_context(open_test_client(member, query_string=query))

    async with contextlib.AsyncExitStack() as stack:
        # The oldest one kept is 12: from 11 nothing is missing, from 10 the 11th is.
        client = await join(back_at(StreamPosition(11, epoch)))
        assert await client.receive_json(timeout=10) == notice(11, epoch, True)
        assert offsets(await envelopes(client, 10)) == list(range(12, 22))
        for since in (StreamPosition(10, epoch), StreamPosition(1, epoch), StreamPosition(99, epoch)):
            client = await join(back_at(since))
            # Not recovered: nothing is replayed, the next message is the next live one.
            assert await client.receive_json(timeout=10) == notice(21, epoch, False)
        # Not recovered, with recent=5: the latest 5 instead (the application shows them afresh).
        client = await join(back_at(StreamPosition(1, epoch), recent=5))
        assert await client.receive_json(timeout=10) == notice(16, epoch, False)
        assert [message["data"] for message in await envelopes(client, 5)] == [f"m{i}" for i in range(17, 22)]
        await hub.publish("r", "live")
        assert (await client.receive_json(timeout=10))["offset"] == 22
    recoveries = [subscription.rooms["r"] for subscription in member.subscriptions]
    # (In the order the handlers got there, which a handler resuming late may change.)
    assert sorted((r.recovered, r.replayed) for r in recoveries) == [
        (False, 0),
        (False, 0),
        (False, 0),
        (False, 5),
        (True, 10),
    ]
    assert all(r.position == StreamPosition(21, epoch) for r in recoveries)
    assert (hub.stats.recovered, hub.stats.not_recovered) == (1, 4)


async def test_without_a_position_recent_sends_the_latest_messages_then_the_live_ones(world: World) -> None:
    hub = await world.hub(history_size=100, envelope=True)
    member = Member(hub, "r")
    for i in range(1, 31):
        await hub.publish("r", {"i": i})
    async with open_test_client(member, query_string="recent=10") as client:
        joined = await client.receive_json(timeout=10)
        assert (joined["offset"], joined["recovered"]) == (20, False)
        assert [message["data"]["i"] for message in await envelopes(client, 10)] == list(range(21, 31))
        await hub.publish("r", {"i": 31})
        assert (await client.receive_json(timeout=10))["data"] == {"i": 31}
    async with open_test_client(member, query_string="recent=1000") as client:  # more than there are
        assert (await client.receive_json(timeout=10))["offset"] == 0
        assert offsets(await envelopes(client, 31)) == list(range(1, 32))
    assert not member.subscriptions[0].recovered
    assert member.subscriptions[0].replayed == 10


async def test_presence_notices_and_live_only_publications_are_not_kept_in_the_history(world: World) -> None:
    hub = await world.hub(history_size=100, envelope=True, join_leave=True)
    member = Member(hub, "r")
    async with open_test_client(member) as client:
        assert (await client.receive_json(timeout=10))["recovered"] is False  # where it stands: 0
        join = await client.receive_json(timeout=10)  # its own join notice: raw, no offset
        assert (join["presence"], join["room"]) == ("join", "r")
        assert "offset" not in join
        assert await hub.publish("r", "typing", history=False) is None
        assert await client.receive_text(timeout=10) == "typing"
        kept = await hub.publish("r", "kept")
        assert kept is not None and kept.offset == 1  # neither the notice nor "typing" took an offset
        assert await client.receive_json(timeout=10) == envelope(1, kept.epoch, "kept")
    async with open_test_client(member, query_string="recent=10") as client:
        assert (await client.receive_json(timeout=10))["offset"] == 0
        assert await envelopes(client, 1) == [envelope(1, kept.epoch, "kept")]  # the history: "kept" only
        assert (await client.receive_json(timeout=10))["presence"] == "join"


async def test_a_lost_stream_has_a_new_epoch_and_is_not_recovered(world: World) -> None:
    hub = await world.hub(history_size=100, envelope=True)
    member = Member(hub, "r")
    async with open_test_client(member) as stays:
        old_epoch = (await stays.receive_json(timeout=10))["epoch"]
        before = await hub.publish("r", "before")
        assert before == StreamPosition(1, old_epoch)
        assert (await stays.receive_json(timeout=10))["epoch"] == old_epoch
        if world.redis is not None:  # Redis restarted, without persistence
            assert isinstance(hub.backend, RedisBackend)
            await world.redis.stop()
            await world.redis.start()
            with trio.fail_after(10):
                await hub.backend.ready.wait()  # reconnected, and the room subscribed again
        else:  # the process restarted: a new hub
            hub = await world.hub(history_size=100, envelope=True)
            member = Member(hub, "r")
        after = await hub.publish("r", "after")
        assert after is not None
        assert (after.offset, after.epoch != old_epoch) == (1, True)
        if world.redis is not None:  # a member that stayed sees the epoch change: it may have missed some
            assert await stays.receive_json(timeout=10) == envelope(1, after.epoch, "after")
    async with open_test_client(member, query_string=back_at(before)) as client:
        assert await client.receive_json(timeout=10) == notice(1, after.epoch, False)
        await hub.publish("r", "live")
        assert await client.receive_json(timeout=10) == envelope(2, after.epoch, "live")
    assert not member.subscriptions[-1].recovered


async def test_several_rooms_recover_each_from_its_own_position(world: World) -> None:
    hub = await world.hub(history_size=100, envelope=True)
    hub.configure_room("plain", history_size=0, envelope=False)
    member = Member(hub, "a", "b", "plain")
    a = [await hub.publish("a", f"a{i}") for i in range(1, 6)]
    b = [await hub.publish("b", f"b{i}") for i in range(1, 4)]
    assert a[1] is not None and b[2] is not None
    positions = {"a": [a[1].offset, a[1].epoch], "b": [b[2].offset, b[2].epoch]}
    async with open_test_client(
        member, query_string="positions=" + urllib.parse.quote(json.dumps(positions))
    ) as client:
        got = await envelopes(client, 2 + 3)  # two notices, a3-a5; b is up to date
        by_room = {room: [m for m in got if m["room"] == room] for room in ("a", "b")}
        assert [m.get("data", m.get("recovered")) for m in by_room["a"]] == [True, "a3", "a4", "a5"]
        assert by_room["b"] == [notice(3, b[2].epoch, True, room="b")]
        assert await hub.publish("plain", "no history") is None
        assert await client.receive_text(timeout=10) == "no history"  # as it was published
    subscription = member.subscriptions[0]
    assert subscription.recovered
    assert set(subscription.rooms) == {"a", "b"}
    assert (subscription.rooms["a"].replayed, subscription.rooms["b"].replayed) == (3, 0)
    with pytest.raises(ValueError, match="several rooms"):
        _ = subscription.position


async def test_the_envelope_carries_text_json_and_binary_to_an_independent_client(world: World) -> None:
    """The websockets library's client reads the envelopes, keeps the last position and gives it
    back when it reconnects."""
    hub = await world.hub(history_size=100, envelope=True)
    hub.configure_room("raw", history_size=100, envelope=False)
    router = Router()
    member, raw = Member(hub, "r"), Member(hub, "raw")
    router.add_route("/r", member)
    router.add_route("/raw", raw)
    async with open_websocket_server(router, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.port}"
        connected, go_on = trio.Event(), trio.Event()
        token = trio.lowlevel.current_trio_token()

        def independent_client() -> tuple[list[Any], list[Any]]:
            with ws_sync.connect(url + "/r") as conn:
                first = [json.loads(conn.recv(timeout=10))]
                trio.from_thread.run_sync(connected.set, trio_token=token)
                first += [json.loads(conn.recv(timeout=10)) for _ in range(3)]
            trio.from_thread.run(go_on.wait, trio_token=token)
            last = first[-1]
            with ws_sync.connect(f"{url}/r?offset={last['offset']}&epoch={last['epoch']}") as conn:
                again = [json.loads(conn.recv(timeout=10)) for _ in range(2)]
            return first, again

        async with trio.open_nursery() as nursery:
            results: list[Any] = []

            async def run_client() -> None:
                results.append(await trio.to_thread.run_sync(independent_client))

            nursery.start_soon(run_client)
            await connected.wait()
            await hub.publish("r", "héllo")
            await hub.publish("r", {"n": [1, 2]})
            await hub.publish("r", b"\x00\xff")
            with trio.fail_after(10):
                while hub.count("r"):  # the client went away
                    await trio.testing.wait_all_tasks_blocked(cushion=0.01)
            await hub.publish("r", "missed")
            go_on.set()
        [(first, again)] = results
        epoch = first[0]["epoch"]
        assert first[1:] == [
            envelope(1, epoch, "héllo"),
            envelope(2, epoch, {"n": [1, 2]}),
            {**envelope(3, epoch, "AP8="), "encoding": "base64"},
        ]
        assert again == [
            notice(3, epoch, True),
            envelope(4, epoch, "missed"),
        ]
        async with open_test_client(raw) as client:  # history without the envelope: as published
            await raw.wait_joined(1)
            position = await hub.publish("raw", b"\x01")
            assert position is not None and position.offset == 1
            assert await client.receive_bytes(timeout=10) == b"\x01"
        assert raw.subscriptions[0].position == StreamPosition(0, position.epoch)


async def test_an_in_memory_history_expires_its_ttl_after_the_last_publication(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = Hub(history_size=100, history_ttl=60, envelope=True)
    member = Member(hub, "r")
    first = await hub.publish("r", "m1")
    assert first is not None
    await trio.sleep(50)
    await hub.publish("r", "m2")  # the ttl counts from the last publication
    await trio.sleep(50)
    async with open_test_client(member, query_string=back_at(first)) as client:
        assert (await client.receive_json(timeout=10))["recovered"] is True
        assert (await client.receive_json(timeout=10))["data"] == "m2"
    await trio.sleep(61)
    async with open_test_client(member, query_string=back_at(first)) as client:
        joined = await client.receive_json(timeout=10)
        assert (joined["recovered"], joined["offset"], joined["epoch"] != first.epoch) == (False, 0, True)
    assert [s.recovered for s in member.subscriptions] == [True, False]


async def test_settings_and_positions_that_make_no_sense_are_refused_clearly() -> None:
    wrong: list[tuple[Any, Any]] = [(-1, "e"), (True, "e"), (1.5, "e"), (1, ""), (1, None)]
    for offset, epoch in wrong:
        with pytest.raises(ValueError):
            StreamPosition(offset, epoch)
    assert StreamPosition.from_client("12", "abc") == StreamPosition(12, "abc")
    assert StreamPosition.from_client(12, "abc") == StreamPosition(12, "abc")
    malformed: list[tuple[object, object]] = [("-1", "e"), ("1e3", "e"), ("١٢", "e"), (None, "e")]
    malformed += [("1", None), ("1", "x" * 65), (2**63, "e"), (True, "e")]
    for offset, epoch in malformed:
        assert StreamPosition.from_client(offset, epoch) is None  # treated as a new client
    with pytest.raises(ValueError, match="history_size"):
        Hub(history_size=-1)
    with pytest.raises(ValueError, match="envelope needs a history"):
        Hub(envelope=True)
    for ttl in (-1, float("inf"), float("nan"), "60"):
        with pytest.raises(ValueError, match="history_ttl"):
            Hub().configure_room("r", history_size=1, history_ttl=ttl)  # type: ignore[arg-type]

    class PubSubOnly:  # a BroadcastBackend keeping no history
        async def run(self, hub: Hub, task_status: Any = trio.TASK_STATUS_IGNORED) -> None: ...
        async def publish(self, room: str, message: PreparedMessage) -> None: ...
        async def subscribe(self, rooms: Any) -> None: ...
        def unsubscribe(self, rooms: Any) -> None: ...

    hub = Hub(PubSubOnly())
    hub.configure_room("plain", queue_size=8)  # fine without history
    with pytest.raises(TypeError, match="keeps no history"):
        hub.configure_room("r", history_size=10)

    hub = Hub(history_size=10)
    errors: list[Exception] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        at = StreamPosition(1, "e")
        for since, recent in ((at, 0), ({"c": at}, 0), ({"a": "1:e"}, 0), ("1:e", 0), (None, -1)):
            try:
                async with hub.subscribe(ws, "a", "b", since=since, recent=recent):  # type: ignore[arg-type]
                    pass  # pragma: no cover
            except (ValueError, TypeError) as exc:
                errors.append(exc)
        assert hub.rooms == {}  # nothing registered
        await ws.send_text("done")

    async with open_test_client(handler) as client:
        assert await client.receive_text(timeout=10) == "done"
    assert [type(e) for e in errors] == [ValueError, ValueError, TypeError, TypeError, ValueError]
    assert "exactly one room" in str(errors[0])
    assert "['c']" in str(errors[1])
