"""Presence in one process: the hub's members with their info, a member in several rooms, leaves
however the connection ends, join and leave notices; and the tracker's heartbeat, expiry and
retries against an in-memory presence backend, on trio's mock clock."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection, Mapping
from typing import Any

import pytest
import trio
import trio.testing

from trio_ws import Hub, Member, PresenceBackend, PresenceUnavailable, WebSocket
from trio_ws.protocol import PreparedMessage
from trio_ws.testing import TestClient, open_test_client


def member(hub: Hub, *rooms: str, info: Any = None) -> Any:
    """A handler in ``rooms`` with ``info``: it says its client id, then stays until the client
    sends "leave" (answered "out", still connected) or goes."""

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        async with hub.subscribe(ws, *rooms, info=info):
            await ws.send_json({"client_id": hub.client_id(ws)})
            async for text in ws.iter_text():
                if text == "leave":
                    break
        await ws.send_text("out")
        async for _ in ws.iter_text():
            pass

    return handler


class Inbox:
    """What a client received, sorted: its client id, the presence notices, the other messages
    (a hub's queued messages and the handler's own may come in either order)."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.client_id: str | None = None
        self.notices: list[dict[str, Any]] = []
        self.other: list[Any] = []

    async def receive(self) -> None:
        message = await self.client.receive_json(timeout=10)
        if isinstance(message, dict) and "client_id" in message and len(message) == 1:
            self.client_id = message["client_id"]
        elif isinstance(message, dict) and "presence" in message:
            self.notices.append(message)
        else:
            self.other.append(message)

    async def until(self, predicate: Any) -> None:
        while not predicate(self):
            await self.receive()


async def joined(client: TestClient) -> str:
    inbox = Inbox(client)
    await inbox.until(lambda inbox: inbox.client_id is not None)
    assert inbox.client_id is not None
    return inbox.client_id


async def until_true(predicate: Any) -> None:
    """Until the server's tasks (cleanup after a connection ends) made ``predicate()`` true."""
    with trio.fail_after(5):
        while not await predicate():
            await trio.testing.wait_all_tasks_blocked(cushion=0.01)


async def test_presence_lists_the_members_with_their_info() -> None:
    hub = Hub()
    async with (
        open_test_client(member(hub, "lobby", info={"user": "ann", "tags": ["a", "é"]})) as ann,
        open_test_client(member(hub, "lobby")) as bob,
        open_test_client(member(hub, "other", info="carol")) as carol,
    ):
        ann_id, bob_id, carol_id = [await joined(client) for client in (ann, bob, carol)]
        assert len({ann_id, bob_id, carol_id}) == 3
        lobby = await hub.presence("lobby")
        ann_info = {"user": "ann", "tags": ["a", "é"]}
        assert {m.client_id: m.info for m in lobby} == {ann_id: ann_info, bob_id: None}
        assert [m.client_id for m in lobby] == [ann_id, bob_id]  # oldest first
        assert all(isinstance(m, Member) and m.joined_at > 0 for m in lobby)
        assert await hub.presence_count("lobby") == 2
        [other] = await hub.presence("other")
        assert (other.client_id, other.info) == (carol_id, "carol")
        assert await hub.presence("nobody") == []
        assert await hub.presence_count("nobody") == 0


async def test_info_is_copied_as_json_at_the_join() -> None:
    hub = Hub()
    info: dict[str, Any] = {"user": "ann", "n": (1, 2)}
    async with open_test_client(member(hub, "r", info=info)) as client:
        await joined(client)
        info["user"] = "changed afterwards"
        [found] = await hub.presence("r")
        assert found.info == {"user": "ann", "n": [1, 2]}  # as JSON made it, not the live dict


@pytest.mark.parametrize("info", [{"x": object()}, float("nan"), {1j: 2}])
async def test_info_that_is_not_json_is_refused_and_registers_nothing(info: Any) -> None:
    hub = Hub()
    with pytest.raises(TypeError, match="JSON-serialisable"):
        async with open_test_client(member(hub, "r", info=info)) as client:
            await client.receive_text(timeout=10)
    assert hub.rooms == {}
    assert await hub.presence("r") == []


async def test_a_member_in_several_rooms_is_one_client_everywhere() -> None:
    hub = Hub()
    seen: dict[str, Any] = {}

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        async with hub.subscribe(ws, "a", "b", info={"user": "ann"}):
            async with hub.subscribe(ws, "c", info={"user": "ann", "in": "c"}):
                seen["inner"] = {room: await hub.presence(room) for room in "abc"}
            seen["outer"] = {room: await hub.presence(room) for room in "abc"}
            seen["id"] = hub.client_id(ws)
        seen["after"] = hub.client_id(ws)
        await ws.send_text("done")

    async with open_test_client(handler) as client:
        assert await client.receive_text(timeout=10) == "done"
    inner = seen["inner"]
    assert {m.client_id for room in "abc" for m in inner[room]} == {seen["id"]}
    assert inner["a"][0].info == inner["b"][0].info == {"user": "ann"}
    assert inner["c"][0].info == {"user": "ann", "in": "c"}
    assert [len(seen["outer"][room]) for room in "abc"] == [1, 1, 0]  # left c only
    assert seen["after"] is None  # in no room: no id any more
    assert await hub.presence("a") == []


@pytest.mark.parametrize("ending", ["leave", "client-close", "handler-raises"])
async def test_a_member_leaves_presence_however_its_membership_ends(ending: str) -> None:
    hub = Hub()

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        async with hub.subscribe(ws, "r", info={"n": 1}):
            await ws.send_text("in")
            text = await ws.receive_text()
            if text == "raise":
                raise RuntimeError("handler failure")
        await ws.send_text("out")
        await ws.receive_text()

    async with open_test_client(member(hub, "r")) as stays:
        stays_id = await joined(stays)
        with contextlib.suppress(RuntimeError):
            async with open_test_client(handler) as goes:
                assert await goes.receive_text(timeout=10) == "in"
                assert await hub.presence_count("r") == 2
                if ending == "leave":
                    await goes.send_text("leave")
                    assert await goes.receive_text(timeout=10) == "out"  # still connected
                elif ending == "handler-raises":
                    await goes.send_text("raise")
                    with contextlib.suppress(Exception):
                        await goes.receive_text(timeout=10)

        async def only_stays() -> bool:
            return [m.client_id for m in await hub.presence("r")] == [stays_id]

        await until_true(only_stays)


def notice(event: str, room: str, client_id: str | None, info: Any) -> dict[str, Any]:
    return {"presence": event, "room": room, "client_id": client_id, "info": info}


async def test_join_and_leave_notices_in_one_process() -> None:
    hub = Hub()
    hub.configure_room("lobby", join_leave=True)
    async with open_test_client(member(hub, "lobby", info={"user": "ann"})) as ann_client:
        ann = Inbox(ann_client)
        await ann.until(lambda inbox: inbox.client_id is not None and inbox.notices)
        assert ann.notices == [notice("join", "lobby", ann.client_id, {"user": "ann"})]  # its own
        async with open_test_client(member(hub, "lobby", info={"user": "bob"})) as bob_client:
            bob = Inbox(bob_client)
            await bob.until(lambda inbox: inbox.client_id is not None and inbox.notices)
            assert bob.notices == [notice("join", "lobby", bob.client_id, {"user": "bob"})]
            await ann.until(lambda inbox: len(inbox.notices) == 2)
            assert ann.notices[1] == notice("join", "lobby", bob.client_id, {"user": "bob"})
        # bob's connection is gone: ann is told.
        await ann.until(lambda inbox: len(inbox.notices) == 3)
        assert ann.notices[2] == notice("leave", "lobby", bob.client_id, {"user": "bob"})


async def test_rooms_without_join_leave_send_no_notice() -> None:
    hub = Hub(join_leave=True)  # the hub's default: on
    hub.configure_room("quiet", join_leave=False)
    async with open_test_client(member(hub, "quiet")) as first:
        inbox = Inbox(first)
        await inbox.until(lambda inbox: inbox.client_id is not None)
        async with open_test_client(member(hub, "quiet")) as second:
            await joined(second)
        await hub.publish("quiet", ["marker"])  # after both joins and the leave
        await inbox.until(lambda inbox: inbox.other)
        assert inbox.other == [["marker"]]
        assert inbox.notices == []
    hub.configure_room("quiet", join_leave=None)  # back to the hub's default
    async with open_test_client(member(hub, "quiet")) as third:
        inbox = Inbox(third)
        await inbox.until(lambda inbox: inbox.notices)
        assert inbox.notices[0]["presence"] == "join"


# ---------------------------------------------------------------- a presence backend, mock clock


class FakeRedis:
    """One server's presence entries and pub/sub, in memory, on trio's clock."""

    def __init__(self) -> None:
        self.hubs: list[Hub] = []
        self.entries: dict[str, dict[str, tuple[str, float]]] = {}  # room -> id -> (entry, expires)
        self.failing = False
        self.delay = 0.0  # how long a write takes

    def live(self, room: str) -> list[tuple[str, str]]:
        now = trio.current_time()
        return [(cid, entry) for cid, (entry, expires) in self.entries.get(room, {}).items() if expires > now]


class FakeBackend:
    """A :class:`PresenceBackend` (and broadcast backend) on a :class:`FakeRedis`."""

    def __init__(self, server: FakeRedis, ttl: float = 3.0, interval: float = 1.0) -> None:
        self.server = server
        self.ttl = ttl
        self.presence_interval = interval

    async def run(self, hub: Hub, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.server.hubs.append(hub)
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            self.server.hubs.remove(hub)

    async def publish(self, room: str, message: PreparedMessage) -> None:
        await trio.lowlevel.checkpoint()
        for hub in self.server.hubs:
            hub.deliver_local(room, message, remote=True)

    async def subscribe(self, rooms: Collection[str]) -> None:
        await trio.lowlevel.checkpoint()

    def unsubscribe(self, rooms: Collection[str]) -> None:
        pass

    async def _checked(self) -> None:
        await trio.lowlevel.checkpoint()
        if self.server.failing:
            raise PresenceUnavailable("the fake is failing")

    async def presence_update(
        self, room: str, add: Mapping[str, str], remove: Collection[str]
    ) -> list[tuple[str, str]]:
        await self._checked()
        await trio.sleep(self.server.delay)
        entries = self.server.entries.setdefault(room, {})
        for cid, entry in add.items():
            entries[cid] = (entry, trio.current_time() + self.ttl)
        for cid in remove:
            entries.pop(cid, None)
        now = trio.current_time()
        expired = [(cid, entry) for cid, (entry, expires) in entries.items() if expires <= now]
        for cid, _ in expired:
            del entries[cid]
        return expired

    async def presence_entries(self, room: str) -> list[tuple[str, str]]:
        await self._checked()
        return self.server.live(room)

    async def presence_count(self, room: str) -> int:
        await self._checked()
        return len(self.server.live(room))


def test_the_fake_is_a_presence_backend() -> None:
    assert isinstance(FakeBackend(FakeRedis()), PresenceBackend)


@contextlib.asynccontextmanager
async def process(server: FakeRedis, **options: Any) -> AsyncIterator[Hub]:
    """A hub of its own "process" on the fake server, running for the block. At the end of the
    block its tasks stop, but its members stay connected: as if the process had died."""
    hub = Hub(FakeBackend(server, **options), join_leave=True)

    async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with hub:
            task_status.started()
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        await nursery.start(run)
        yield hub
        nursery.cancel_scope.cancel()


async def held(handler: Any, task_status: trio.TaskStatus[TestClient] = trio.TASK_STATUS_IGNORED) -> None:
    """A test client that outlives the block it was opened in (until cancelled)."""
    async with open_test_client(handler) as client:
        task_status.started(client)
        await trio.sleep_forever()


async def test_a_stopped_processs_entries_expire_and_its_members_are_announced_gone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeRedis()
    async with (
        process(server, ttl=3.0, interval=1.0) as hub_a,
        open_test_client(member(hub_a, "r", info="ann")) as ann_client,
        trio.open_nursery() as clients,
    ):
        ann = Inbox(ann_client)
        await ann.until(lambda inbox: inbox.client_id is not None and inbox.notices)
        async with process(server, ttl=3.0, interval=1.0) as hub_b:
            bob_client = await clients.start(held, member(hub_b, "r", info="bob"))
            bob_id = await joined(bob_client)
            await ann.until(lambda inbox: len(inbox.notices) == 2)  # through the "pub/sub"
            assert ann.notices[1] == notice("join", "r", bob_id, "bob")
            assert {m.client_id for m in await hub_b.presence("r")} == {ann.client_id, bob_id}
            await trio.sleep(10)  # ten heartbeats, past the ttl three times: both are kept
            assert {m.info for m in await hub_a.presence("r")} == {"ann", "bob"}
        stopped = trio.current_time()
        # hub_b's tasks are gone, bob's connection is not: nobody rewrites bob's entry any more.
        await ann.until(lambda inbox: len(inbox.notices) == 3)
        assert ann.notices[2] == notice("leave", "r", bob_id, "bob")
        # Its last rewrite was less than an interval before the stop; hub_a's next heartbeat after
        # the expiry finds it.
        assert 3.0 - 1.0 <= trio.current_time() - stopped <= 3.0 + 1.0 + 0.01
        assert [m.client_id for m in await hub_a.presence("r")] == [ann.client_id]
        clients.cancel_scope.cancel()


async def test_writes_the_backend_refused_are_made_at_the_next_heartbeat(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeRedis()
    async with process(server, ttl=1000.0, interval=5.0) as hub:
        async with open_test_client(member(hub, "r")) as first:
            first_id = await joined(first)
            assert [cid for cid, _ in server.live("r")] == [first_id]
            server.failing = True
            with pytest.raises(PresenceUnavailable):
                await hub.presence("r")
            with pytest.raises(PresenceUnavailable):
                await hub.presence_count("r")
            with trio.fail_after(0.1):  # a join is not held up by a failing backend
                async with open_test_client(member(hub, "r")) as second:
                    second_id = await joined(second)
        await trio.testing.wait_all_tasks_blocked()
        assert [cid for cid, _ in server.live("r")] == [first_id]  # its deletion was refused
        server.failing = False
        async with open_test_client(member(hub, "r")) as third:
            third_id = await joined(third)
            recovered = trio.current_time()
            with trio.fail_after(5.0 + 0.01):  # the next heartbeat, long before the ttl
                while [cid for cid, _ in server.live("r")] != [third_id]:  # noqa: ASYNC110 - mock clock
                    await trio.sleep(0.01)
            assert trio.current_time() - recovered > 0.01  # first's deletion waited for the heartbeat
            assert second_id not in dict(server.live("r"))


class BroadcastOnly:
    """A broadcast backend that keeps no presence."""

    async def run(self, hub: Hub, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def publish(self, room: str, message: PreparedMessage) -> None:
        await trio.lowlevel.checkpoint()

    async def subscribe(self, rooms: Collection[str]) -> None:
        await trio.lowlevel.checkpoint()

    def unsubscribe(self, rooms: Collection[str]) -> None:
        pass


async def test_with_a_backend_that_keeps_no_presence_it_is_this_processs_members() -> None:
    hub = Hub(BroadcastOnly())
    async with hub, open_test_client(member(hub, "r", info=[1])) as client:
        client_id = await joined(client)
        assert [(m.client_id, m.info) for m in await hub.presence("r")] == [(client_id, [1])]
        assert await hub.presence_count("r") == 1


async def test_a_join_waits_for_its_entry_and_a_hub_closing_normally_for_the_leaves(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeRedis()
    server.delay = 1.0
    hub = Hub(FakeBackend(server, ttl=1000.0, interval=500.0))
    async with hub:
        async with open_test_client(member(hub, "r")) as client:
            client_id = await joined(client)
            assert [cid for cid, _ in server.live("r")] == [client_id]  # written before the block
        # The connection is gone; its deletion takes a second. Leaving the hub's block waits for it.
        assert [cid for cid, _ in server.live("r")] == [client_id]
    assert server.live("r") == []
