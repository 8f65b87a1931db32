"""Presence: who is in a room, across processes, with what the application attached when they
joined; and the join and leave notices a room may send its members.

The hub keeps a :class:`PresenceTracker`. Without a backend, presence is the hub's own membership.
With a :class:`PresenceBackend` (:class:`~trio_ws.RedisBackend`), each member has an entry in the
backend with its own expiry; the tracker's task writes the joins and leaves, rewrites every local
entry each ``presence_interval`` (the heartbeat) so that entries of a process that died expire, and
publishes the notices through the hub.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import time
import uuid
from collections.abc import Collection, Mapping
from typing import Any, Protocol, final, runtime_checkable

import attrs
import trio

from ..protocol import PreparedMessage

__all__ = ["Member", "PresenceBackend", "PresenceTracker", "PresenceUnavailable"]

logger = logging.getLogger("trio_ws.broadcast")

#: How long a join (or a closing hub) waits for the tracker's task to write its entries.
WRITE_WAIT = 5.0


class PresenceUnavailable(ConnectionError):
    """The backend cannot answer a presence query now: Redis is away, not answering in time, or
    refused the command. Raised by :meth:`Hub.presence` and :meth:`Hub.presence_count`."""


@attrs.frozen
class Member:
    """A member of a room, as :meth:`Hub.presence` lists it."""

    #: The connection's id: unique across processes, the same in every room the connection is in
    #: at once (a connection that has left all its rooms gets a new one when it joins again).
    client_id: str
    #: The ``info`` given when joining, as JSON made it (a copy; ``None`` if none was given).
    info: Any
    #: When it joined, in seconds since the epoch, by its own process's clock.
    joined_at: float


@runtime_checkable
class PresenceBackend(Protocol):
    """A :class:`BroadcastBackend` that also keeps presence entries (as :class:`RedisBackend`
    does). The hub's tracker calls these; an entry is a JSON text, one per member and room."""

    #: Seconds between two rewrites of this process's entries (the heartbeat).
    presence_interval: float

    async def presence_update(
        self, room: str, add: Mapping[str, str], remove: Collection[str]
    ) -> list[tuple[str, str]]:
        """Write the entries ``add`` (client id -> entry) with a fresh expiry, delete those of
        ``remove``, then delete and return ``room``'s entries that expired (client id, entry).
        Raise :class:`PresenceUnavailable` if that cannot be done (within a bounded time)."""
        ...

    async def presence_entries(self, room: str) -> list[tuple[str, str]]:
        """``room``'s entries that have not expired (client id, entry), or raise
        :class:`PresenceUnavailable` (within a bounded time)."""
        ...

    async def presence_count(self, room: str) -> int:
        """How many entries ``room`` has that have not expired, or raise
        :class:`PresenceUnavailable` (within a bounded time)."""
        ...


class _HubSide(Protocol):
    """What the tracker uses of its hub."""

    @property
    def backend(self) -> object: ...

    async def publish(self, room: str, data: Any, *, history: bool = ...) -> object: ...

    def deliver_local(self, room: str, message: PreparedMessage, *, remote: bool = ...) -> None: ...


def _entry(member: Member) -> str:
    return json.dumps({"info": member.info, "joined_at": member.joined_at}, separators=(",", ":"))


def _member(client_id: str, entry: str) -> Member | None:
    """The member an entry describes; ``None`` for an entry this library did not write."""
    try:
        data = json.loads(entry)
        return Member(client_id, data["info"], float(data["joined_at"]))
    except (ValueError, TypeError, KeyError):
        return None


def _notice(event: str, room: str, member: Member) -> dict[str, Any]:
    return {"presence": event, "room": room, "client_id": member.client_id, "info": member.info}


_Changes = dict[str, Member | None]  # client id -> the entry to write, or None to delete it


@final
class PresenceTracker:
    """A hub's presence (internal: the hub calls it). It knows this process's members; with a
    backend, its :meth:`run` task writes their entries and publishes the notices."""

    def __init__(self, hub: _HubSide, join_leave: bool = False) -> None:
        self._hub = hub
        self._join_leave_default = join_leave
        self._join_leave: dict[str, bool] = {}
        self._local: dict[str, dict[str, Member]] = {}  # room -> client id -> member, here
        self._connections: dict[object, dict[str, Member]] = {}  # ws -> room -> member
        self._ids: dict[object, str] = {}  # ws -> client id, while it is in a room
        self._urgent: dict[str, _Changes] = {}  # joins and leaves to write, by room
        self._retry: dict[str, set[str]] = {}  # deletions the backend did not take
        self._notices: collections.deque[tuple[str, dict[str, Any]]] = collections.deque()
        self._delivering = False
        self._failing = False
        self._wakeup = trio.Event()
        self._queued = 0  # changes made so far, counted
        self._done = 0  # of those, how many the task has written (or given up on)
        self._progress = trio.Event()

    # ------------------------------------------------------------ the hub's side

    def configure(self, room: str, join_leave: bool | None) -> None:
        """Send join and leave notices in ``room`` (``None``: as the hub's default)."""
        if join_leave is None:
            self._join_leave.pop(room, None)
        else:
            self._join_leave[room] = join_leave

    def join_leave(self, room: str) -> bool:
        """Whether ``room`` sends join and leave notices."""
        return self._join_leave.get(room, self._join_leave_default)

    def client_id(self, ws: object) -> str | None:
        """The id of ``ws`` while it is in a room, else ``None``."""
        return self._ids.get(ws)

    async def joined(self, ws: object, rooms: Collection[str], info: Any) -> None:
        """``ws`` is in ``rooms`` now. With a backend, returns once its entries are written and
        the join notices published, or the backend failed (the heartbeat writes them later)."""
        try:
            encoded = json.dumps(info, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"a member's info must be JSON-serialisable: {exc}") from None
        if not rooms:
            await trio.lowlevel.checkpoint()
            return
        info = json.loads(encoded)
        client_id = self._ids.setdefault(ws, uuid.uuid4().hex)
        mine = self._connections.setdefault(ws, {})
        now = time.time()
        for room in rooms:
            member = mine[room] = Member(client_id, info, now)
            self._local.setdefault(room, {})[client_id] = member
            self._changed(room, member, joined=True)
        if self._hub.backend is None:
            await trio.lowlevel.checkpoint()
            self._deliver_notices()
        else:
            await self._written()

    def left(self, ws: object, rooms: Collection[str]) -> None:
        """``ws`` is out of ``rooms`` (those it was not in are ignored)."""
        mine = self._connections.get(ws)
        if not mine:
            return
        for room in rooms:
            member = mine.pop(room, None)
            if member is None:
                continue
            local = self._local[room]
            del local[member.client_id]
            if not local:
                del self._local[room]
            self._changed(room, member, joined=False)
        if not mine:
            del self._connections[ws], self._ids[ws]
        if self._hub.backend is None:
            self._deliver_notices()
        else:
            self._wakeup.set()

    def _changed(self, room: str, member: Member, *, joined: bool) -> None:
        if self._hub.backend is not None:  # the entry to write, or None: delete it
            self._urgent.setdefault(room, {})[member.client_id] = member if joined else None
        if self.join_leave(room):
            self._notices.append((room, _notice("join" if joined else "leave", room, member)))

    def _deliver_notices(self) -> None:
        """Without a backend: hand the notices to the members here, in order (a notice that makes
        a member leave adds its own notice to the same loop, never a nested one)."""
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._notices:
                room, notice = self._notices.popleft()
                text = json.dumps(notice, separators=(",", ":"), ensure_ascii=False)
                self._hub.deliver_local(room, PreparedMessage(text))
        finally:
            self._delivering = False

    async def _written(self) -> None:
        """Until the task has handled every change made so far (at most ``WRITE_WAIT``)."""
        self._queued += 1
        target = self._queued
        self._wakeup.set()
        with trio.move_on_after(WRITE_WAIT):
            while self._done < target:
                await self._progress.wait()

    async def settle(self) -> None:
        """For a hub closing normally: wait (at most ``WRITE_WAIT``) until the leaves so far are
        written and their notices published."""
        if self._hub.backend is None:
            await trio.lowlevel.checkpoint()
            return
        await self._written()

    # ------------------------------------------------------------ queries

    def _store(self) -> PresenceBackend | None:
        backend = self._hub.backend
        return backend if isinstance(backend, PresenceBackend) else None

    async def members(self, room: str) -> list[Member]:
        """The members of ``room``: in the backend's entries if it keeps them, else here."""
        store = self._store()
        if store is None:
            await trio.lowlevel.checkpoint()
            found = list(self._local.get(room, {}).values())
        else:
            entries = await store.presence_entries(room)
            found = [member for member in (_member(*pair) for pair in entries) if member is not None]
        return sorted(found, key=lambda member: (member.joined_at, member.client_id))

    async def count(self, room: str) -> int:
        """How many members ``room`` has (as :meth:`members` would list them)."""
        store = self._store()
        if store is None:
            await trio.lowlevel.checkpoint()
            return len(self._local.get(room, ()))
        return await store.presence_count(room)

    # ------------------------------------------------------------ the task

    async def run(self) -> None:
        """With a backend, for the hub's life: write the joins and leaves as they come, rewrite
        every local entry each ``presence_interval``, and publish the notices, in order."""
        if self._hub.backend is None:
            return
        store = self._store()
        interval = math.inf if store is None else store.presence_interval
        next_beat = trio.current_time() + interval
        while True:
            with trio.move_on_at(next_beat):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            refresh: dict[str, _Changes] = {}
            if trio.current_time() >= next_beat:
                next_beat = trio.current_time() + interval
                refresh = self._heartbeat()
            await self._work(store, refresh)

    def _heartbeat(self) -> dict[str, _Changes]:
        """Every local entry, and the deletions to try again."""
        refresh: dict[str, _Changes] = {room: dict(members) for room, members in self._local.items()}
        for room, client_ids in self._retry.items():
            changes = refresh.setdefault(room, {})
            for client_id in client_ids:
                changes.setdefault(client_id, None)
        self._retry = {}
        return refresh

    async def _work(self, store: PresenceBackend | None, refresh: dict[str, _Changes]) -> None:
        """Joins and leaves first, then their notices, then the heartbeat's rooms; a failed
        write ends the round (the next heartbeat writes it all again)."""
        while True:
            if self._urgent:
                room = next(iter(self._urgent))
                if not await self._write(store, room, self._urgent.pop(room)):
                    self._give_up(refresh)
                    refresh = {}
            elif self._notices:
                room, notice = self._notices.popleft()
                await self._hub.publish(room, notice, history=False)  # of the moment: not kept
            else:
                self._done = self._queued
                self._progress.set()
                self._progress = trio.Event()
                if not refresh:
                    return
                room = next(iter(refresh))
                if not await self._write(store, room, refresh.pop(room)):
                    self._give_up(refresh)
                    refresh = {}

    def _give_up(self, refresh: dict[str, _Changes]) -> None:
        """The backend fails: keep the deletions for the next heartbeat, drop the rest (the
        heartbeat rewrites every local entry)."""
        for pending in (self._urgent, refresh):
            for room, changes in pending.items():
                gone = {client_id for client_id, entry in changes.items() if entry is None}
                if gone:
                    self._retry.setdefault(room, set()).update(gone)
        self._urgent = {}

    async def _write(self, store: PresenceBackend | None, room: str, changes: _Changes) -> bool:
        if store is None:
            await trio.lowlevel.checkpoint()
            return True
        add = {client_id: _entry(entry) for client_id, entry in changes.items() if entry is not None}
        remove = [client_id for client_id, entry in changes.items() if entry is None]
        try:
            expired = await store.presence_update(room, add, remove)
        except Exception as exc:  # logged once per outage; retried at the next heartbeat
            self._retry.setdefault(room, set()).update(remove)
            if not self._failing:
                self._failing = True
                logger.warning("presence entries not written (retrying each heartbeat): %s", exc)
            return False
        if self._failing:
            self._failing = False
            logger.warning("presence entries written again")
        if self.join_leave(room):
            for client_id, entry in expired:  # of a process that stopped refreshing them
                member = _member(client_id, entry)
                if member is not None:
                    self._notices.append((room, _notice("leave", room, member)))
        return True
