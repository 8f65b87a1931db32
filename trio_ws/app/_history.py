"""History of rooms: every publication to a room with history gets the next offset of the room's
stream, whose epoch names it (a stream lost and made again has a new epoch); the latest publications
are kept, so a member that comes back with the position it last saw is sent what it missed.

This module holds the values the hub and its backends share, the in-memory history of a hub without
a backend, and the JSON envelope that tells a client the position of each message.
"""

from __future__ import annotations

import base64
import collections
import json
import secrets
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol, final, runtime_checkable

import attrs
import trio

from ..protocol import PreparedMessage

__all__ = ["HistoryBackend", "HistoryPage", "Publication", "Recovery", "StreamPosition", "Subscription"]

#: The longest epoch taken from a client (ours are 16 characters).
MAX_EPOCH_LENGTH = 64


def _check_offset(instance: Any, attribute: Any, value: Any) -> None:
    if type(value) is not int or value < 0:
        raise ValueError(f"offset must be an int >= 0, not {value!r}")


def _check_epoch(instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"epoch must be a non-empty str, not {value!r}")


@attrs.frozen
class StreamPosition:
    """A place in a room's stream: the ``offset`` of a publication (``0``: before the first one) in
    the stream named ``epoch``.

    A client keeps the position of the last message it received and gives it back when it reconnects,
    ``hub.subscribe(ws, room, since=StreamPosition(offset, epoch))``, to be sent what it missed.
    Raises ``ValueError`` for an offset that is not an ``int >= 0`` or an empty epoch."""

    offset: int = attrs.field(validator=_check_offset)  #: the offset of the last publication seen
    epoch: str = attrs.field(validator=_check_epoch)  #: the stream the offset belongs to

    @classmethod
    def from_client(cls, offset: object, epoch: object) -> StreamPosition | None:
        """The position a client sent (the strings of a query string, or the values of a JSON
        message), or ``None`` when either is missing or malformed: such a client is treated as a
        new one (not recovered), never answered with an error."""
        if isinstance(offset, str) and offset.isascii() and offset.isdigit() and len(offset) <= 19:
            offset = int(offset)
        if type(offset) is not int or offset < 0 or offset >= 2**63:
            return None
        if not isinstance(epoch, str) or not 0 < len(epoch) <= MAX_EPOCH_LENGTH:
            return None
        return cls(offset, epoch)


@attrs.frozen
class Publication:
    """One message of a room's history, at ``offset`` in the room's stream."""

    offset: int  #: its offset in the room's stream
    message: PreparedMessage  #: the message, as members receive it (without the envelope)
    is_json: bool = False  #: it was published as a JSON value (not as a ``str``)


@attrs.frozen
class HistoryPage:
    """What a history backend read: where the room's stream stands, and publications of it."""

    position: StreamPosition  #: the stream's latest offset (``0`` if nothing was published) and epoch
    publications: Sequence[Publication] = ()  #: in offset order


@runtime_checkable
class HistoryBackend(Protocol):
    """A :class:`BroadcastBackend` that also keeps the history of rooms (:class:`RedisBackend` does).
    Both calls raise as ``BroadcastBackend.publish`` does when the server cannot be reached."""

    async def append(
        self, room: str, message: PreparedMessage, *, is_json: bool, size: int, ttl: float
    ) -> StreamPosition:
        """In one step: give ``message`` the next offset of ``room``'s stream (making the stream,
        with a new epoch, if there is none), keep it among the latest ``size`` (the whole stream
        lives ``ttl`` seconds after its last publication; ``0``: for ever), and publish it to every
        hub with its position (``hub.deliver_local(..., position=...)``). Returns its position."""
        ...

    async def read(self, room: str, *, since: StreamPosition | None, limit: int, ttl: float) -> HistoryPage:
        """Where ``room``'s stream stands (made, with a new epoch and a life of ``ttl``, if there is
        none) and: with ``since`` in the same epoch, every publication after it that is still kept;
        with another epoch, none; without ``since``, the latest ``limit``."""
        ...


@attrs.frozen
class Recovery:
    """How a member joined one room with history (or one it gave a position for)."""

    room: str  #: the room
    since: StreamPosition | None  #: the position the member gave, if any
    #: Where the room's stream stood when the member joined (its latest offset): the replayed
    #: messages end there, the live ones come after it (``None``: the room has no history here, or
    #: the history could not be read).
    position: StreamPosition | None
    #: Every message after ``since`` was replayed: the member has missed nothing. ``False`` without
    #: ``since``, or when the history no longer covers it (trimmed, expired, epoch changed, history
    #: unreachable): the application reloads the member's state.
    recovered: bool
    replayed: int  #: messages of history sent before the live ones (recovered, or the latest ``recent``)


@final
@attrs.frozen
class Subscription:
    """What ``async with hub.subscribe(...) as subscription:`` gives: how each room with history, and
    each room given a position, was joined."""

    rooms: Mapping[str, Recovery] = attrs.field(factory=dict)  #: room -> how it was joined

    @property
    def recovered(self) -> bool:
        """A position was given (``since``) and every room it was given for was recovered."""
        asked = [recovery for recovery in self.rooms.values() if recovery.since is not None]
        return bool(asked) and all(recovery.recovered for recovery in asked)

    @property
    def position(self) -> StreamPosition | None:
        """The position of the one room with history (``None`` without one); raises ``ValueError``
        when there are several (read ``rooms[room].position``)."""
        if len(self.rooms) > 1:
            raise ValueError("several rooms: read subscription.rooms[room].position")
        return next((recovery.position for recovery in self.rooms.values()), None)

    @property
    def replayed(self) -> int:
        """How many messages of history were sent, in all the rooms."""
        return sum(recovery.replayed for recovery in self.rooms.values())


def new_epoch() -> str:
    """A fresh epoch for a new stream: random, so a stream made again never has an old one's."""
    return secrets.token_hex(8)


def check_history(size: int, ttl: float, envelope: bool) -> None:
    """Refuse history settings that make no sense, with the reason."""
    if type(size) is not int or size < 0:
        raise ValueError("history_size must be an int >= 0 (0: no history)")
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 <= ttl < float("inf"):
        raise ValueError("history_ttl must be a number of seconds >= 0 (0: kept until trimmed)")
    if envelope and not size:
        raise ValueError("envelope needs a history (history_size >= 1): offsets come from it")


def positions_by_room(
    rooms: Sequence[str], since: StreamPosition | Mapping[str, StreamPosition] | None
) -> dict[str, StreamPosition]:
    """``since`` as room -> position, checked against the rooms subscribed to."""
    if since is None:
        return {}
    if isinstance(since, StreamPosition):
        if len(rooms) != 1:
            raise ValueError("since=StreamPosition(...) needs exactly one room; give {room: position}")
        return {rooms[0]: since}
    if not isinstance(since, Mapping):
        raise TypeError(f"since must be a StreamPosition or a mapping of them, not {type(since).__name__}")
    unknown = set(since) - set(rooms)
    if unknown:
        raise ValueError(f"since names rooms not subscribed to: {sorted(unknown)}")
    for position in since.values():
        if not isinstance(position, StreamPosition):
            raise TypeError(f"since's values must be StreamPosition, not {type(position).__name__}")
    return dict(since)


def is_recovered(since: StreamPosition, page: HistoryPage) -> bool:
    """Whether ``page`` (read after ``since``) holds every publication after ``since``."""
    top = page.position
    if since.epoch != top.epoch or since.offset > top.offset:
        return False
    if since.offset == top.offset:
        return True
    return bool(page.publications) and page.publications[0].offset == since.offset + 1


# ------------------------------------------------------------------ the envelope


def enveloped(
    room: str, message: PreparedMessage, position: StreamPosition, is_json: bool
) -> PreparedMessage:
    """``message`` in the JSON envelope: ``{"room", "offset", "epoch", "data"}`` (a binary message's
    data in base64, with ``"encoding": "base64"``)."""
    if not message.is_text:
        data = '"' + base64.b64encode(message.payload).decode("ascii") + '","encoding":"base64"'
    elif is_json:
        data = message.payload.decode("utf-8")
    else:
        data = json.dumps(message.payload.decode("utf-8"), ensure_ascii=False)
    head = json.dumps(room, ensure_ascii=False)
    epoch = json.dumps(position.epoch)
    return PreparedMessage(f'{{"room":{head},"offset":{position.offset},"epoch":{epoch},"data":{data}}}')


def join_notice(room: str, position: StreamPosition | None, recovered: bool) -> PreparedMessage:
    """The envelope's first message in a room: where the member stands, and whether it missed
    nothing (no ``"data"`` key)."""
    notice = {
        "room": room,
        "offset": None if position is None else position.offset,
        "epoch": None if position is None else position.epoch,
        "recovered": recovered,
    }
    return PreparedMessage(json.dumps(notice, separators=(",", ":"), ensure_ascii=False))


# ------------------------------------------------------------------ in memory


class _RoomStream:
    __slots__ = ("entries", "epoch", "expires", "offset")

    def __init__(self, size: int) -> None:
        self.epoch = new_epoch()
        self.offset = 0
        self.entries: collections.deque[Publication] = collections.deque(maxlen=size)
        self.expires = float("inf")


@final
class MemoryHistory:
    """The history of a hub without a backend: a ring buffer per room, for ``ttl`` seconds after the
    room's last publication (on trio's clock)."""

    def __init__(self) -> None:
        self._streams: dict[str, _RoomStream] = {}
        self._sweep_at = 1024  # drop expired streams when there are this many

    def _stream(self, room: str, size: int, ttl: float, now: float) -> _RoomStream:
        stream = self._streams.get(room)
        if stream is None or now >= stream.expires:
            stream = self._streams[room] = _RoomStream(size)
            stream.expires = now + ttl if ttl else float("inf")
            if len(self._streams) >= self._sweep_at:
                self._sweep(now)
        elif stream.entries.maxlen != size:
            stream.entries = collections.deque(stream.entries, maxlen=size)
        return stream

    def _sweep(self, now: float) -> None:
        for room in [room for room, stream in self._streams.items() if now >= stream.expires]:
            del self._streams[room]
        self._sweep_at = max(1024, 2 * len(self._streams))

    def append(
        self, room: str, message: PreparedMessage, *, is_json: bool, size: int, ttl: float
    ) -> StreamPosition:
        """Keep ``message`` at the next offset (synchronous: the hub delivers it at once after)."""
        now = trio.current_time()
        stream = self._stream(room, size, ttl, now)
        stream.offset += 1
        stream.entries.append(Publication(stream.offset, message, is_json))
        stream.expires = now + ttl if ttl else float("inf")
        return StreamPosition(stream.offset, stream.epoch)

    async def read(
        self, room: str, *, since: StreamPosition | None, limit: int, size: int, ttl: float
    ) -> HistoryPage:
        """As :meth:`HistoryBackend.read`."""
        await trio.lowlevel.checkpoint()
        stream = self._stream(room, size, ttl, trio.current_time())
        position = StreamPosition(stream.offset, stream.epoch)
        entries: Collection[Publication] = stream.entries
        if since is not None:
            if since.epoch != stream.epoch:
                return HistoryPage(position)
            return HistoryPage(position, tuple(entry for entry in entries if entry.offset > since.offset))
        if not limit:
            return HistoryPage(position)
        return HistoryPage(position, tuple(entries)[-limit:])
