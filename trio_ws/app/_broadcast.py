"""Rooms and broadcast: a :class:`Hub` sends one message to every connection in a room.

Each subscriber has a bounded outgoing queue and its own sender task (in the connection's nursery),
so a publisher never waits on a stalled peer; when a queue is full, the room's :class:`Overflow`
policy drops the oldest or the newest message, or closes that connection. A message is encoded
once (:class:`~trio_ws.protocol.PreparedMessage`): connections without compression all send the
same frame bytes. The backend carries messages between processes (:class:`RedisBackend`); without
one, the hub is in-memory. A room may keep a history of its messages (``_history*.py``).
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol, final

import trio

from ..connection import WebSocket, WebSocketDisconnect
from ..protocol import CloseCode, PreparedMessage
from ._history import StreamPosition, Subscription, positions_by_room
from ._history_hub import HubHistory
from ._hub_policy import HubStats, Overflow, RoomPolicy
from ._presence import Member, PresenceTracker

__all__ = ["BroadcastBackend", "Hub", "HubStats", "Overflow"]

logger = logging.getLogger("trio_ws.broadcast")


class BroadcastBackend(Protocol):
    """Carries messages between hubs in several processes: ``run`` listens for the hub's life
    (calling ``task_status.started()`` once it is under way) and hands each message to
    ``hub.deliver_local(room, message, remote=True)``; ``publish`` sends one to every hub, this one
    included. The hub calls ``subscribe`` when rooms get their first local member and
    ``unsubscribe`` when they lose their last one. NATS, Valkey and the like fit the same methods."""

    async def run(self, hub: Hub, task_status: trio.TaskStatus[None] = ...) -> None:
        """Listen until cancelled, surviving the loss of the server (reconnect, resubscribe)."""
        ...

    async def publish(self, room: str, message: PreparedMessage) -> None:
        """Send ``message`` to ``room`` in every process; raise if it cannot be sent
        (``TimeoutError`` if it may still be delivered)."""
        ...

    async def subscribe(self, rooms: Collection[str]) -> None:
        """Receive ``rooms``' messages from now on: return once a message published after the
        return reaches this hub (or after a timeout of the backend's, if the server is away)."""
        ...

    def unsubscribe(self, rooms: Collection[str]) -> None:
        """``rooms`` have no member here any more: stop receiving them (may be done later)."""
        ...


class _Subscriber:
    __slots__ = ("closing", "cutoffs", "queue", "replay", "rooms", "scope", "wakeup", "ws")

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.rooms: set[str] = set()
        self.queue: collections.deque[PreparedMessage] = collections.deque()
        self.replay: collections.deque[PreparedMessage] = collections.deque()
        self.cutoffs: dict[str, StreamPosition] = {}
        self.wakeup = trio.Event()
        self.scope = trio.CancelScope()
        self.closing = False


@final
class Hub:
    """Rooms of connections, and publishing to them.

    ``async with hub.subscribe(ws, "room", ...)`` puts ``ws`` in rooms for the block; it leaves them at
    the end of the block, or as soon as the connection ends, whichever comes first.
    ``await hub.publish("room", data)`` sends ``data`` (``str``: text; ``bytes``: binary; anything
    else: JSON text) to every member, without waiting for any of them. ``queue_size``, ``overflow``
    and ``close_code`` are the default policy; :meth:`configure_room` sets one room's.

    With a ``backend`` (:class:`RedisBackend`), messages go through it, so members connected to other
    processes receive them too; run the hub with ``async with hub:`` (or it starts its listener as a
    trio system task on first use, for a hub made at module level). With a backend, ``subscribe``
    enters its block once the backend receives the rooms (a message published after that reaches
    ``ws``). A publication the backend took is delivered at most once; one that failed fast was
    never sent; one that timed out may still be delivered (``stats.publish_timeouts``).

    ``history_size`` (``0``: none), ``history_ttl`` (``0``: no limit) and ``envelope`` are the rooms'
    default history (guide: "History and recovery"), kept in memory or by a :class:`HistoryBackend`
    (another backend: ``TypeError``).

    :meth:`presence` lists a room's members in every process; with ``join_leave`` (the default of
    :meth:`configure_room`'s), members are told when someone joins or leaves (docs: Presence).
    """

    def __init__(
        self,
        backend: BroadcastBackend | None = None,
        *,
        join_leave: bool = False,
        queue_size: int = 64,
        overflow: Overflow | str = Overflow.DROP_OLDEST,
        close_code: int = CloseCode.TRY_AGAIN_LATER,
        history_size: int = 0,
        history_ttl: float = 0,
        envelope: bool = False,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.backend = backend
        self.stats = HubStats()
        self._history = HubHistory(backend, self.deliver_local)
        self._default = RoomPolicy(
            queue_size, Overflow(overflow), close_code, history_size, history_ttl, envelope
        )
        self._history.check(self._default)
        self._policies: dict[str, RoomPolicy] = {}
        self._rooms: dict[str, set[_Subscriber]] = {}
        self._subscribers: dict[WebSocket, _Subscriber] = {}
        self._presence = PresenceTracker(self, join_leave)
        self._running = False

    # ------------------------------------------------------------ lifetime

    async def __aenter__(self) -> Hub:
        self._lifetime = self._run()
        await self._lifetime.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self._lifetime.__aexit__(*exc_info)

    @asynccontextmanager
    async def _run(self) -> AsyncIterator[None]:
        if self.backend is None or self._running:  # no backend, or its listener already runs
            await trio.lowlevel.checkpoint()
            yield
            return
        async with trio.open_nursery() as nursery:
            self._running = True
            await nursery.start(self.backend.run, self)
            nursery.start_soon(self._presence.run)
            try:
                yield
                await self._presence.settle()  # the leaves so far are written (not when cancelled)
            finally:
                self._running = False
                nursery.cancel_scope.cancel()

    def _ensure_running(self) -> None:
        if self.backend is not None and not self._running:
            self._running = True
            trio.lowlevel.spawn_system_task(self.backend.run, self)
            trio.lowlevel.spawn_system_task(self._presence.run)

    # ------------------------------------------------------------ membership

    def configure_room(
        self,
        room: str,
        *,
        join_leave: bool | None = None,
        queue_size: int | None = None,
        overflow: Overflow | str | None = None,
        close_code: int | None = None,
        history_size: int | None = None,
        history_ttl: float | None = None,
        envelope: bool | None = None,
    ) -> None:
        """Set the overflow policy and the history of ``room`` (unset parts keep the hub's
        defaults), alike in every process. Raises ``ValueError`` for settings that make no sense."""
        self._presence.configure(room, join_leave)
        policy = self._default.changed(
            queue_size=queue_size,
            overflow=overflow,
            close_code=close_code,
            history_size=history_size,
            history_ttl=history_ttl,
            envelope=envelope,
        )
        self._history.check(policy)
        self._policies[room] = policy

    @asynccontextmanager
    async def subscribe(
        self,
        ws: WebSocket,
        *rooms: str,
        info: Any = None,
        since: StreamPosition | Mapping[str, StreamPosition] | None = None,
        recent: int = 0,
    ) -> AsyncIterator[Subscription]:
        """Be in ``rooms`` for the block (the connection must be accepted), with ``info`` (any JSON
        value, else ``TypeError``) in the room's :meth:`presence`; the block gets a
        :class:`Subscription`. In a room with history, ``since`` (the position the member last saw,
        ``{room: position}`` for several rooms) first sends every message after it, none twice, none
        missing, or says ``recovered=False``; ``recent`` the latest ``recent`` messages otherwise.
        ``ValueError`` (or ``TypeError``) for a ``since`` that does not fit ``rooms``."""
        positions = positions_by_room(rooms, since)
        if recent < 0:
            raise ValueError("recent must be >= 0")
        self._ensure_running()
        subscriber = self._subscribers.get(ws)
        if subscriber is None:
            nursery = ws.nursery  # RuntimeError before accept(): nothing registered yet
            subscriber = self._subscribers[ws] = _Subscriber(ws)
            nursery.start_soon(self._sender, subscriber)
        added = [room for room in rooms if room not in subscriber.rooms]
        for room in added:
            subscriber.rooms.add(room)
            self._rooms.setdefault(room, set()).add(subscriber)
        with_history = [room for room in added if self._policy(room).history_size]
        for room in with_history:  # live messages are held until the history is read
            self._history.hold(subscriber, room)
        try:
            if self.backend is not None:  # a message published once this returns reaches ws
                await self.backend.subscribe(added)
            else:
                await trio.lowlevel.checkpoint()
            subscription = await self._history.join_all(
                subscriber, with_history, positions, recent, self._policy, self._enqueue, self.stats
            )
            await self._presence.joined(ws, added, info)  # entries written, join notices sent
            yield subscription
        finally:
            for room in with_history:
                self._history.release(subscriber, room)
            self._leave(subscriber, added)

    def _policy(self, room: str) -> RoomPolicy:
        return self._policies.get(room, self._default)

    def _leave(self, subscriber: _Subscriber, rooms: list[str] | set[str]) -> None:
        self._presence.left(subscriber.ws, rooms)
        emptied = []
        for room in list(rooms):
            subscriber.rooms.discard(room)
            subscriber.cutoffs.pop(room, None)
            members = self._rooms.get(room)
            if members is not None:
                members.discard(subscriber)
                if not members:
                    del self._rooms[room]
                    emptied.append(room)
        if emptied and self.backend is not None:
            self.backend.unsubscribe(emptied)
        if not subscriber.rooms and self._subscribers.get(subscriber.ws) is subscriber:
            del self._subscribers[subscriber.ws]
            subscriber.scope.cancel()

    def members(self, room: str) -> list[WebSocket]:
        """The connections in ``room``."""
        return [subscriber.ws for subscriber in self._rooms.get(room, ())]

    def count(self, room: str) -> int:
        """How many connections are in ``room`` (in this process)."""
        return len(self._rooms.get(room, ()))

    @property
    def rooms(self) -> dict[str, int]:
        """Every room with members in this process, and how many."""
        return {room: len(members) for room, members in self._rooms.items()}

    async def presence(self, room: str) -> list[Member]:
        """The members of ``room`` in every process, oldest first; :class:`PresenceUnavailable`
        if the backend cannot tell now (within its timeout)."""
        self._ensure_running()
        return await self._presence.members(room)

    async def presence_count(self, room: str) -> int:
        """How many members :meth:`presence` would list (cheaper: no entry is read)."""
        self._ensure_running()
        return await self._presence.count(room)

    def client_id(self, ws: WebSocket) -> str | None:
        """The :attr:`Member.client_id` of ``ws`` while it is in a room here, else ``None``."""
        return self._presence.client_id(ws)

    # ------------------------------------------------------------ publishing

    async def publish(self, room: str, data: Any, *, history: bool = True) -> StreamPosition | None:
        """Send ``data`` to every member of ``room``: ``str`` as text, ``bytes`` as binary, anything
        else as JSON text. Never waits for a member; with a backend, waits for the backend only.
        Returns the publication's position in a room with history (``None`` otherwise, or if the
        backend did not take it: never raised, counted in ``stats.publish_errors``). With
        ``history=False`` it is sent live only, as in a room without history: not kept, no offset,
        no envelope (for what is of the moment: presence notices, "typing…")."""
        is_json = False
        if isinstance(data, (str, bytes, bytearray, memoryview)):
            message = PreparedMessage(data if isinstance(data, str) else bytes(data))
        else:
            is_json = True
            message = PreparedMessage(json.dumps(data, separators=(",", ":"), ensure_ascii=False))
        self.stats.published += 1
        policy = self._policies.get(room, self._default)
        keep = history and policy.history_size
        if self.backend is None:
            await trio.lowlevel.checkpoint()
            if keep:  # kept and delivered in one step: in offset order
                return self._history.append_local(room, message, is_json, policy)
            self.deliver_local(room, message)
            return None
        self._ensure_running()
        try:
            if keep:
                return await self._history.append(room, message, is_json, policy)
            await self.backend.publish(room, message)
        except Exception as exc:  # counted, never raised into the handler
            self.stats.publish_errors += 1
            if isinstance(exc, TimeoutError):  # it may still be delivered
                self.stats.publish_timeouts += 1
            logger.warning("publish to %r failed: %s", room, exc)
        return None

    def deliver_local(
        self,
        room: str,
        message: PreparedMessage,
        *,
        remote: bool = False,
        position: StreamPosition | None = None,
        is_json: bool = False,
    ) -> None:
        """Queue ``message`` for every member of ``room`` in this process (backends call this, with
        the ``position`` of a publication of the room's history, and whether it ``is_json``)."""
        if remote:
            self.stats.received += 1
        members = self._rooms.get(room)
        if not members:
            return
        policy = self._policies.get(room, self._default)
        targets: Collection[_Subscriber] = members
        if position is not None:  # a publication of the room's history
            message, targets = self._history.deliver(room, message, position, is_json, members, policy)
        self._enqueue(targets, message, policy)

    def _enqueue(
        self, members: Collection[_Subscriber], message: PreparedMessage, policy: RoomPolicy
    ) -> None:
        """Queue ``message`` for ``members``, by the room's overflow policy."""
        for subscriber in list(members):
            queue = subscriber.queue
            if len(queue) >= policy.queue_size:
                if policy.overflow is Overflow.DROP_NEWEST:
                    self.stats.dropped_newest += 1
                    continue
                if policy.overflow is Overflow.DROP_OLDEST:
                    queue.popleft()
                    self.stats.dropped_oldest += 1
                else:
                    self._close(subscriber, policy.close_code)
                    continue
            queue.append(message)
            subscriber.wakeup.set()

    def _close(self, subscriber: _Subscriber, code: int) -> None:
        if subscriber.closing:
            return
        subscriber.closing = True
        self.stats.closed += 1
        self._leave(subscriber, set(subscriber.rooms))
        subscriber.queue.clear()
        subscriber.replay.clear()
        ws = subscriber.ws
        with contextlib.suppress(RuntimeError):  # RuntimeError: the connection is already gone
            ws.nursery.start_soon(ws.close, code, "too slow for this room")

    async def _sender(self, subscriber: _Subscriber) -> None:
        """Write the subscriber's queue to its connection, in order, until it leaves or the
        connection ends; then it is in no room any more."""
        try:
            with subscriber.scope:
                while True:
                    if subscriber.replay:  # history replayed on joining, before the live messages
                        message = subscriber.replay.popleft()
                    elif subscriber.queue:
                        message = subscriber.queue.popleft()
                    else:
                        subscriber.wakeup = trio.Event()
                        await subscriber.wakeup.wait()
                        continue
                    await subscriber.ws.send_prepared(message, direct=True)
                    self.stats.delivered += 1
        except WebSocketDisconnect:
            pass
        finally:
            self._leave(subscriber, set(subscriber.rooms))
