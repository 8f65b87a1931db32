"""Presence in Redis: the entries of a room's members, each with its own expiry, for any coredis
client (one server or a cluster).

A room's entries live in two keys under the room's hash tag, so that a cluster keeps them in one
slot and every script below touches one slot only: the hash ``{<prefix><room>}:presence``
(client id -> the entry's JSON) and the sorted set ``{<prefix><room>}:presence:expiry`` (client
id -> when the entry expires, in milliseconds of Redis's clock). Times are Redis's own (``TIME``),
so the processes' clocks never have to agree. Both keys expire with their last entry.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import trio

from ._presence import PresenceUnavailable

__all__ = ["RedisPresence"]

_NOW = "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

#: ARGV: ttl (ms), how many entries to write, then (id, entry) pairs, then the ids to remove.
#: Writes, removes, then sweeps the expired entries and returns them as id, entry, id, entry...
_UPDATE = (
    _NOW
    + """
local ttl = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
for i = 0, n - 1 do
  redis.call('HSET', KEYS[1], ARGV[3 + 2 * i], ARGV[4 + 2 * i])
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[3 + 2 * i])
end
for i = 3 + 2 * n, #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[2], ARGV[i])
end
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  local entry = redis.call('HGET', KEYS[1], id)
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  if entry then
    out[#out + 1] = id
    out[#out + 1] = entry
  end
end
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if #last == 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
else
  redis.call('PEXPIREAT', KEYS[1], last[2])
  redis.call('PEXPIREAT', KEYS[2], last[2])
end
return out
"""
)

#: The entries not expired, as id, entry, id, entry...
_ENTRIES = (
    _NOW
    + """
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf')) do
  local entry = redis.call('HGET', KEYS[1], id)
  if entry then
    out[#out + 1] = id
    out[#out + 1] = entry
  end
end
return out
"""
)

_COUNT = _NOW + "return redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf')\n"


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _pairs(flat: Any) -> list[tuple[str, str]]:
    items = [_text(value) for value in flat or ()]
    return list(zip(items[::2], items[1::2], strict=True))


class RedisPresence:
    """Presence entries in Redis, for a backend that has a coredis client (``coredis.Redis`` or
    ``coredis.RedisCluster``, with or without ``decode_responses``).

    Each call is one script on one room's keys (one cluster slot), bounded by ``timeout`` seconds.
    ``client`` is ``None`` while the backend is not connected. Every failure -- no client, a
    timeout, an error from Redis or from the client -- raises :class:`PresenceUnavailable`.
    """

    def __init__(self, prefix: str, ttl: float, interval: float, timeout: float) -> None:
        if not 0 < interval < ttl:
            raise ValueError("presence_interval must be positive and shorter than presence_ttl")
        self.prefix = prefix
        self.ttl = ttl
        self.interval = interval
        self.timeout = timeout
        from coredis.commands.script import Script  # the redis extra: only a RedisBackend gets here

        self._scripts = {
            "update": Script(script=_UPDATE),
            "entries": Script(script=_ENTRIES),
            "count": Script(script=_COUNT),
        }

    def keys(self, room: str) -> list[str]:
        """The two keys of ``room``: its entries (a hash) and their expiries (a sorted set)."""
        tag = "{" + self.prefix + room + "}"
        return [f"{tag}:presence", f"{tag}:presence:expiry"]

    async def update(
        self, client: Any, room: str, add: Mapping[str, str], remove: Collection[str]
    ) -> list[tuple[str, str]]:
        """Write the entries ``add`` (client id -> JSON) with a fresh expiry, delete ``remove``,
        and delete and return the entries that have expired (client id, JSON)."""
        args: list[str | int] = [round(self.ttl * 1000), len(add)]
        for client_id, entry in add.items():
            args += (client_id, entry)
        args += remove
        return _pairs(await self._call(client, "update", room, args))

    async def entries(self, client: Any, room: str) -> list[tuple[str, str]]:
        """The entries of ``room`` that have not expired (client id, JSON)."""
        return _pairs(await self._call(client, "entries", room, []))

    async def count(self, client: Any, room: str) -> int:
        """How many entries of ``room`` have not expired."""
        return int(await self._call(client, "count", room, []))

    async def _call(self, client: Any, name: str, room: str, args: list[str | int]) -> Any:
        if client is None:
            await trio.lowlevel.checkpoint()
            raise PresenceUnavailable("Redis is not available (connecting, or not answering)")
        try:
            with trio.fail_after(self.timeout):
                return await self._scripts[name](keys=self.keys(room), args=args, client=client)
        except trio.TooSlowError:
            raise PresenceUnavailable(f"Redis did not answer within {self.timeout} s") from None
        except Exception as exc:  # coredis's errors, a connection lost, a pool closed under us
            raise PresenceUnavailable(f"Redis presence command failed: {exc!r}") from exc
