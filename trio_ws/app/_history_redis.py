"""The history of rooms in Redis: a stream per room and a hash beside it, written and read by Lua
scripts so that giving an offset, keeping the message and publishing it are one step.

Every key of a room carries the same hash tag, ``{<prefix><room>}``, so one script touches one slot
of a Redis Cluster; the publishing command is an argument of the script (``PUBLISH``, or
``SPUBLISH`` to a shard channel carrying the same hash tag). :class:`RedisHistory` is shared by the
Redis backends; it is given the client to run on.
"""

from __future__ import annotations

from typing import Any, final

from ..protocol import PreparedMessage
from ._history import HistoryPage, Publication, StreamPosition, new_epoch

__all__ = ["RedisHistory", "decode_message", "encode_message"]

# KEYS: the stream, the meta hash (fields "epoch" and "offset"), the channel.
# ARGV: the publishing command, the record, the size, the ttl in ms (0: none), an epoch for a new stream.
# A missing meta hash (never made, expired, or lost with the server) means a new stream: new epoch,
# offsets from 1, and whatever stream was left is dropped.
APPEND = """
local epoch = redis.call("hget", KEYS[2], "epoch")
if not epoch then
  epoch = ARGV[5]
  redis.call("del", KEYS[1])
  redis.call("hset", KEYS[2], "epoch", epoch)
end
local id = string.format("%d", redis.call("hincrby", KEYS[2], "offset", 1))
redis.call("xadd", KEYS[1], "maxlen", ARGV[3], id .. "-0", "d", ARGV[2])
if ARGV[4] ~= "0" then
  redis.call("pexpire", KEYS[1], ARGV[4])
  redis.call("pexpire", KEYS[2], ARGV[4])
end
redis.call(ARGV[1], KEYS[3], "h" .. id .. ":" .. epoch .. ":" .. ARGV[2])
return {id, epoch}
"""

# KEYS: the stream, the meta hash.
# ARGV: an epoch for a new stream, its ttl in ms (0: none), the first stream id wanted ("": the
# latest ones instead), the epoch that id belongs to, how many of the latest (0: none).
READ = """
local epoch = redis.call("hget", KEYS[2], "epoch")
if not epoch then
  epoch = ARGV[1]
  redis.call("del", KEYS[1])
  redis.call("hset", KEYS[2], "epoch", epoch, "offset", 0)
  if ARGV[2] ~= "0" then
    redis.call("pexpire", KEYS[2], ARGV[2])
  end
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
return {offset, epoch, entries}
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
class RedisHistory:
    """The Lua scripts of the rooms' history, for the backends that keep it in Redis (a plain client
    or a cluster client): ``publish_command`` is ``"PUBLISH"`` or ``"SPUBLISH"``."""

    def __init__(self, prefix: str, *, publish_command: str = "PUBLISH") -> None:
        if publish_command.upper() not in ("PUBLISH", "SPUBLISH"):
            raise ValueError("publish_command must be PUBLISH or SPUBLISH")
        from coredis.commands.script import Script

        self.prefix = prefix
        self.publish_command = publish_command.lower()
        self._append: Any = Script(script=APPEND)
        self._read: Any = Script(script=READ)

    def keys(self, room: str) -> tuple[str, str]:
        """The keys of ``room``'s history: its stream and its meta hash (one hash tag)."""
        tag = self.shard_channel(room)
        return tag + ":history", tag + ":meta"

    def shard_channel(self, room: str) -> str:
        """A channel for ``room`` in the slot of its keys (what ``SPUBLISH`` needs): its hash tag."""
        return "{" + self.prefix + room + "}"

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
        offset, epoch = await self._append([stream, meta, channel], [*args, new_epoch()], client=client)
        return StreamPosition(int(offset), bytes(epoch).decode("ascii"))

    async def read(
        self, client: Any, room: str, *, since: StreamPosition | None, limit: int, ttl: float
    ) -> HistoryPage:
        """As :meth:`~trio_ws.HistoryBackend.read`."""
        stream, meta = self.keys(room)
        start, epoch = ("", "") if since is None else (f"{since.offset + 1}-0", since.epoch)
        args = [new_epoch(), _milliseconds(ttl), start, epoch, str(limit if since is None else 0)]
        offset, current, entries = await self._read([stream, meta], args, client=client)
        publications = []
        for entry_id, fields in entries if since is not None else reversed(entries):
            decoded = decode_message(bytes(fields[1]))
            if decoded is not None:
                message, _, is_json = decoded
                publications.append(Publication(int(bytes(entry_id).split(b"-")[0]), message, is_json))
        return HistoryPage(StreamPosition(int(offset), bytes(current).decode("ascii")), tuple(publications))
