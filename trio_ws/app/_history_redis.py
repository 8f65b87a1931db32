"""The history of rooms in Redis: a stream per room and a hash beside it, written and read by Lua
scripts so that giving an offset, keeping the message and publishing it are one step.

Every key of a room carries the same hash tag, ``{<prefix><room>}``, so one script touches one slot
of a Redis Cluster; the publishing command is an argument of the script (``PUBLISH``, or
``SPUBLISH`` to a shard channel carrying the same hash tag). :class:`RedisHistory` is shared by the
Redis backends; it is given the client to run on.

A stream's offset never goes back in Redis, unless Redis lost publications it had taken: writes a
primary had not yet sent to its replica when it failed over (replication is asynchronous), or a
restart from an older copy of the data. The next publications would then be given offsets already
given, and a member coming back with one of those would be sent the new messages for the lost ones.
So :class:`RedisHistory` remembers, per room, the furthest offset this process saw of the stream
(in the replies and the live messages), and the scripts start a new epoch instead of going on from
a stream that is behind it; a live offset seen twice ends the epoch too (:meth:`~RedisHistory.retire`).
"""

from __future__ import annotations

import collections
import logging
from typing import Any, final

from ..protocol import PreparedMessage
from ._history import HistoryPage, Publication, StreamPosition, new_epoch

__all__ = ["RedisHistory", "decode_message", "encode_message"]

logger = logging.getLogger("trio_ws.broadcast")

#: How many rooms a backend remembers the positions of (the ones used last).
REMEMBERED_ROOMS = 100_000
#: The furthest offset of an epoch that has to end: no stream is ever that far.
ENDED = 2**52

# The start of a script that may begin a new stream. KEYS[2] is the meta hash (fields "epoch" and
# "offset"); ARGV[floor] and ARGV[floor + 1] the furthest position this process saw of the stream
# ("" and "0": none). A missing hash (never made, expired, or lost with the server) means a new
# stream; so does a stream behind that position (Redis lost publications).
_BEGIN = """
local epoch = redis.call("hget", KEYS[2], "epoch")
local behind = epoch and epoch == ARGV[%(floor)d]
  and tonumber(redis.call("hget", KEYS[2], "offset") or "0") < tonumber(ARGV[%(floor)d + 1])
local fresh = not epoch
if behind or fresh then
  epoch = ARGV[%(epoch)d]
  redis.call("del", KEYS[1])
  redis.call("hset", KEYS[2], "epoch", epoch, "offset", 0)
end
"""

# KEYS: the stream, the meta hash, the channel.
# ARGV: the publishing command, the record, the size, the ttl in ms (0: none), an epoch for a new
# stream, the furthest position seen (epoch, offset). Returns the offset, the epoch, 1 if behind.
APPEND = (
    _BEGIN % {"floor": 6, "epoch": 5}
    + """
local id = string.format("%d", redis.call("hincrby", KEYS[2], "offset", 1))
redis.call("xadd", KEYS[1], "maxlen", ARGV[3], id .. "-0", "d", ARGV[2])
if ARGV[4] ~= "0" then
  redis.call("pexpire", KEYS[1], ARGV[4])
  redis.call("pexpire", KEYS[2], ARGV[4])
end
redis.call(ARGV[1], KEYS[3], "h" .. id .. ":" .. epoch .. ":" .. ARGV[2])
return {id, epoch, behind and 1 or 0}
"""
)

# KEYS: the stream, the meta hash.
# ARGV: an epoch for a new stream, its ttl in ms (0: none), the first stream id wanted ("": the
# latest ones instead), the epoch that id belongs to, how many of the latest (0: none), the
# furthest position seen (epoch, offset). A stream made again behind that position keeps its ttl.
READ = (
    _BEGIN % {"floor": 6, "epoch": 1}
    + """
if fresh and ARGV[2] ~= "0" then
  redis.call("pexpire", KEYS[2], ARGV[2])
end
local offset = redis.call("hget", KEYS[2], "offset") or "0"
local entries = {}
if ARGV[3] ~= "" then
  if ARGV[4] == epoch then
    entries = redis.call("xrange", KEYS[1], ARGV[3], "+")
  end
elseif ARGV[5] ~= "0" then
  entries = redis.call("xrevrange", KEYS[1], "+", "-", "count", ARGV[5])
end
return {offset, epoch, entries, behind and 1 or 0}
"""
)

# KEYS: the stream, the meta hash. ARGV: the epoch to end, the epoch of the stream that follows.
# Returns where the stream stands (offset, epoch; "" when there is none).
RETIRE = """
if redis.call("hget", KEYS[2], "epoch") == ARGV[1] then
  redis.call("del", KEYS[1])
  redis.call("hset", KEYS[2], "epoch", ARGV[2], "offset", 0)
end
return {redis.call("hget", KEYS[2], "offset") or "0", redis.call("hget", KEYS[2], "epoch") or ""}
"""

_KINDS = {b"t": (True, False), b"j": (True, True), b"b": (False, False)}  # kind -> (text, json)


def encode_message(message: PreparedMessage, *, is_json: bool = False) -> bytes:
    """A message as the channels and the streams carry it: one byte for its kind, then its payload."""
    return (b"j" if is_json else b"t" if message.is_text else b"b") + message.payload


def decode_message(data: bytes) -> tuple[PreparedMessage, StreamPosition | None, bool] | None:
    """A message from a room's channel: the message, its position (published with a history) and
    whether it is JSON; ``None`` if it is not one of ours."""
    position = None
    try:
        if data[:1] == b"h":
            offset, epoch, data = data[1:].split(b":", 2)
            position = StreamPosition(int(offset), epoch.decode("ascii"))
        text, is_json = _KINDS[data[:1]]
        return PreparedMessage(data[1:].decode("utf-8") if text else data[1:]), position, is_json
    except (KeyError, ValueError):
        return None


def _milliseconds(ttl: float) -> str:
    return str(max(1, round(ttl * 1000))) if ttl else "0"


@final
class StreamSeen:
    """What this process saw of a room's stream, in one epoch: the furthest offset (from a reply or
    a live message), and the run of consecutive offsets it received live last (``low`` to ``live``)."""

    __slots__ = ("epoch", "live", "low", "top")

    def __init__(self, epoch: str, offset: int = 0) -> None:
        self.epoch = epoch
        self.top = offset
        self.low, self.live = offset + 1, offset  # no offset received live yet


@final
class RedisHistory:
    """The Lua scripts of the rooms' history, for the backends that keep it in Redis (a plain client
    or a cluster client): ``publish_command`` is ``"PUBLISH"`` or ``"SPUBLISH"``. It remembers where
    this process saw each room's stream (the :data:`REMEMBERED_ROOMS` used last)."""

    def __init__(self, prefix: str, *, publish_command: str = "PUBLISH") -> None:
        if publish_command.upper() not in ("PUBLISH", "SPUBLISH"):
            raise ValueError("publish_command must be PUBLISH or SPUBLISH")
        from coredis.commands.script import Script

        self.prefix = prefix
        self.publish_command = publish_command.lower()
        self._append: Any = Script(script=APPEND)
        self._read: Any = Script(script=READ)
        self._retire: Any = Script(script=RETIRE)
        self._seen: collections.OrderedDict[str, StreamSeen] = collections.OrderedDict()

    def keys(self, room: str) -> tuple[str, str]:
        """The keys of ``room``'s history: its stream and its meta hash (one hash tag)."""
        tag = self.shard_channel(room)
        return tag + ":history", tag + ":meta"

    def shard_channel(self, room: str) -> str:
        """A channel for ``room`` in the slot of its keys (what ``SPUBLISH`` needs): its hash tag."""
        return "{" + self.prefix + room + "}"

    # ------------------------------------------------------------ what this process saw

    def _record(self, room: str, position: StreamPosition) -> StreamSeen:
        """``room``'s record, for ``position``'s epoch (a new record for another epoch)."""
        seen = self._seen.get(room)
        if seen is not None and seen.epoch == position.epoch:
            self._seen.move_to_end(room)
            return seen
        seen = self._seen[room] = StreamSeen(position.epoch, position.offset)
        self._seen.move_to_end(room)
        if len(self._seen) > REMEMBERED_ROOMS:
            self._seen.popitem(last=False)
        return seen

    def _reached(self, room: str, position: StreamPosition, behind: Any) -> StreamPosition:
        """Redis answered that ``room``'s stream reached ``position``."""
        if int(behind):
            logger.warning(
                "room %r: the history in Redis is behind what this process saw of it (Redis lost"
                " publications: a failover, or a restart from an older copy): it starts again with"
                " a new epoch, and members coming back from before are told they missed some",
                room,
            )
        seen = self._record(room, position)
        seen.top = max(seen.top, position.offset)
        return position

    def _floor(self, room: str) -> list[str]:
        """The furthest position this process saw of ``room``'s stream, as script arguments."""
        seen = self._seen.get(room)
        return ["", "0"] if seen is None else [seen.epoch, str(seen.top)]

    def saw_live(self, room: str, position: StreamPosition) -> bool:
        """A live message of ``room`` came with ``position``. True when that offset was received
        live before, in that epoch: Redis gave it again, so it lost publications and the epoch has to
        end (:meth:`retire`); the commands of this process end it too until then. (A room's live
        messages come in offset order on one connection; one older than the run received last may
        come late through another connection, and tells nothing.)"""
        seen = self._record(room, position)
        offset = position.offset
        if seen.low <= offset <= seen.live:
            ended, seen.top = seen.top == ENDED, ENDED
            return not ended
        if offset == seen.live + 1 and seen.low <= seen.live:  # the run goes on
            seen.live = offset
        elif offset > seen.live or seen.low > seen.live:  # after a gap, or the first: a new run
            seen.low = seen.live = offset
        seen.top = max(seen.top, offset)
        return False

    # ------------------------------------------------------------ the scripts

    async def append(
        self,
        client: Any,
        room: str,
        channel: str,
        message: PreparedMessage,
        *,
        is_json: bool,
        size: int,
        ttl: float,
    ) -> StreamPosition:
        """Give ``message`` the room's next offset, keep it, publish it to ``channel``, in one step
        (``channel`` is one of the script's keys: with ``SPUBLISH``, :meth:`shard_channel`)."""
        stream, meta = self.keys(room)
        args = [self.publish_command, encode_message(message, is_json=is_json), str(size), _milliseconds(ttl)]
        args += [new_epoch(), *self._floor(room)]
        offset, epoch, behind = await self._append([stream, meta, channel], args, client=client)
        return self._reached(room, StreamPosition(int(offset), bytes(epoch).decode("ascii")), behind)

    async def read(
        self, client: Any, room: str, *, since: StreamPosition | None, limit: int, ttl: float
    ) -> HistoryPage:
        """As :meth:`~trio_ws.HistoryBackend.read`."""
        stream, meta = self.keys(room)
        start, epoch = ("", "") if since is None else (f"{since.offset + 1}-0", since.epoch)
        args = [new_epoch(), _milliseconds(ttl), start, epoch, str(limit if since is None else 0)]
        offset, current, entries, behind = await self._read(
            [stream, meta], [*args, *self._floor(room)], client=client
        )
        publications = []
        for entry_id, fields in entries if since is not None else reversed(entries):
            decoded = decode_message(bytes(fields[1]))
            if decoded is not None:
                message, _, is_json = decoded
                publications.append(Publication(int(bytes(entry_id).split(b"-")[0]), message, is_json))
        position = self._reached(room, StreamPosition(int(offset), bytes(current).decode("ascii")), behind)
        return HistoryPage(position, tuple(publications))

    async def retire(self, client: Any, room: str, epoch: str) -> None:
        """End ``room``'s stream if its epoch is still ``epoch``: the next one has a new epoch (the
        meta hash keeps its ttl)."""
        offset, current = await self._retire(list(self.keys(room)), [epoch, new_epoch()], client=client)
        current = bytes(current).decode("ascii")
        if current:
            self._reached(room, StreamPosition(int(offset), current), 0)
