"""The hub's side of the rooms' history: publishing to a room's stream, joining with recovery (the
live messages held while the history is read, then merged by offset), and delivering a publication
of a stream (in its envelope, without the duplicates of what was replayed)."""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol, TypeVar, final

import trio

from ..protocol import PreparedMessage
from ._history import (
    HistoryBackend,
    HistoryPage,
    MemoryHistory,
    Publication,
    Recovery,
    StreamPosition,
    Subscription,
    check_history,
    enveloped,
    is_recovered,
    join_notice,
)

__all__ = ["HubHistory"]

logger = logging.getLogger("trio_ws.broadcast")


class HistorySettings(Protocol):
    """A room's history settings (the hub's room policy)."""

    @property
    def history_size(self) -> int: ...
    @property
    def history_ttl(self) -> float: ...
    @property
    def envelope(self) -> bool: ...


class HistoryMember(Protocol):
    """What of a hub's subscriber the history uses."""

    rooms: set[str]
    closing: bool
    replay: collections.deque[PreparedMessage]
    cutoffs: dict[str, StreamPosition]
    wakeup: trio.Event


_M = TypeVar("_M", bound=HistoryMember)
Enqueue = Callable[[Sequence[Any], PreparedMessage, Any], None]  # the hub's: members, message, policy
Held = list[tuple[PreparedMessage, StreamPosition]]


@final
class HubHistory:
    """The history of a hub's rooms: in memory without a backend, else in the backend if it keeps
    one (``available`` is false when it does not)."""

    def __init__(self, backend: object | None, deliver: Callable[..., None]) -> None:
        self.backend = backend if isinstance(backend, HistoryBackend) else None
        self.memory = MemoryHistory() if backend is None else None
        self.available = self.backend is not None or self.memory is not None
        self._deliver = deliver  # the hub's deliver_local
        # room -> the members joining it, and the live messages held for each until its history is read
        self._held: dict[str, dict[HistoryMember, Held]] = {}

    def check(self, settings: HistorySettings) -> None:
        """Refuse history settings that make no sense, or a history the backend cannot keep."""
        check_history(settings.history_size, settings.history_ttl, settings.envelope)
        if settings.history_size and not self.available:
            raise TypeError("the backend keeps no history (it is no HistoryBackend)")

    # ------------------------------------------------------------ publishing

    def append_local(
        self, room: str, message: PreparedMessage, is_json: bool, settings: HistorySettings
    ) -> StreamPosition:
        """In memory: keep ``message`` at the room's next offset and deliver it, in one step."""
        assert self.memory is not None
        size, ttl = settings.history_size, settings.history_ttl
        position = self.memory.append(room, message, is_json=is_json, size=size, ttl=ttl)
        self._deliver(room, message, position=position, is_json=is_json)
        return position

    async def append(
        self, room: str, message: PreparedMessage, is_json: bool, settings: HistorySettings
    ) -> StreamPosition:
        """Through the backend, which publishes it with its position (raises as the backend does)."""
        assert self.backend is not None
        size, ttl = settings.history_size, settings.history_ttl
        return await self.backend.append(room, message, is_json=is_json, size=size, ttl=ttl)

    def deliver(
        self,
        room: str,
        message: PreparedMessage,
        position: StreamPosition,
        is_json: bool,
        members: Collection[_M],
        settings: HistorySettings,
    ) -> tuple[PreparedMessage, list[_M]]:
        """A publication of ``room``'s stream for ``members``: in its envelope, held for those still
        reading the history, dropped for those that were sent it from the history; the message and
        the members to queue it for now."""
        if settings.envelope:
            message = enveloped(room, message, position, is_json)
        holding = self._held.get(room)
        now = []
        for member in members:
            if holding is not None and member in holding:
                holding[member].append((message, position))
                continue
            cutoff = member.cutoffs.get(room)
            if cutoff is not None:
                if cutoff.epoch == position.epoch and position.offset <= cutoff.offset:
                    continue  # replayed already: its live copy came after the history
                del member.cutoffs[room]  # the live stream is past the history: no more duplicates
            now.append(member)
        return message, now

    # ------------------------------------------------------------ joining

    def hold(self, member: HistoryMember, room: str) -> None:
        """Hold ``room``'s live messages for ``member`` until :meth:`join` (or :meth:`release`)."""
        self._held.setdefault(room, {})[member] = []

    def release(self, member: HistoryMember, room: str) -> Held:
        """Stop holding ``room``'s live messages for ``member``; the ones held."""
        holding = self._held.get(room)
        held = [] if holding is None else holding.pop(member, [])
        if holding is not None and not holding:
            del self._held[room]
        return held

    async def join_all(
        self,
        member: HistoryMember,
        rooms: Sequence[str],
        positions: Mapping[str, StreamPosition],
        recent: int,
        settings: Callable[[str], HistorySettings],
        enqueue: Enqueue,
        stats: Any,
    ) -> Subscription:
        """Join the rooms with history (held since subscribing) one by one; count the recoveries."""
        joined = {room: Recovery(room, position, None, False, 0) for room, position in positions.items()}
        for room in rooms:
            joined[room] = await self.join(member, room, positions.get(room), recent, settings(room), enqueue)
        for recovery in joined.values():
            if recovery.since is not None:
                if recovery.recovered:
                    stats.recovered += 1
                else:
                    stats.not_recovered += 1
            stats.replayed += recovery.replayed
        return Subscription(joined)

    async def join(
        self,
        member: HistoryMember,
        room: str,
        since: StreamPosition | None,
        recent: int,
        settings: HistorySettings,
        enqueue: Enqueue,
    ) -> Recovery:
        """Read ``room``'s history, then, in one step: queue what the member missed (or the latest
        ``recent``), then the live messages held meanwhile that come after what the history held."""
        page: HistoryPage | None = None
        recovered = False
        replay: Sequence[Publication] = ()
        try:
            page = await self.read(room, since, recent, settings)
            recovered = since is not None and is_recovered(since, page)
            if recovered or since is None:
                replay = page.publications  # what it missed, or the latest ``recent``
            elif recent:  # the latest ones instead
                page = await self.read(room, None, recent, settings)
                replay = page.publications
        except Exception as exc:  # the history is away: the live messages only
            logger.warning("history of %r could not be read: %s", room, exc)
        held = self.release(member, room)
        position = None if page is None else page.position
        if member.closing or room not in member.rooms:  # it left meanwhile
            return Recovery(room, since, position, False, 0)
        if settings.envelope:  # where the member stands: the next message has the next offset
            start = position
            if position is not None and (recovered or replay):
                start = StreamPosition(replay[0].offset - 1 if replay else position.offset, position.epoch)
            member.replay.append(join_notice(room, start, recovered))
        for publication in replay:
            message = publication.message
            if settings.envelope and position is not None:
                at = StreamPosition(publication.offset, position.epoch)
                message = enveloped(room, message, at, publication.is_json)
            member.replay.append(message)
        for message, at in held:
            if position is None or at.epoch != position.epoch or at.offset > position.offset:
                enqueue([member], message, settings)
        if position is not None:
            member.cutoffs[room] = position
        member.wakeup.set()
        return Recovery(room, since, position, recovered, len(replay))

    async def read(
        self, room: str, since: StreamPosition | None, limit: int, settings: HistorySettings
    ) -> HistoryPage:
        """Read ``room``'s history, where it is kept."""
        ttl = settings.history_ttl
        if self.memory is not None:
            return await self.memory.read(room, since=since, limit=limit, size=settings.history_size, ttl=ttl)
        assert self.backend is not None  # a room with history has a backend that keeps it
        return await self.backend.read(room, since=since, limit=limit, ttl=ttl)
