"""One primary of a Redis Cluster for :class:`RedisClusterBackend`: :class:`ClusterShard` keeps one
connection to it subscribed (SSUBSCRIBE) to the channels of the rooms it serves, checks its health,
and holds a client for what else goes there (publications, the rooms' history and presence).

Why not coredis's ``RedisCluster`` and its ``sharded_pubsub()`` (coredis 6.9, checked on trio):

- ``sharded_pubsub()`` holds one connection per primary in one object, so losing one primary ends it
  for every shard; with its retry policy it reconnects to every primary and resubscribes everything
  after its backoff, and the rooms of the shards that never failed lose their messages meanwhile.
- It never refreshes the cluster layout itself, so it reconnects to a dead primary until something
  else does; a SUNSUBSCRIBE the server sends when a slot leaves a node silently drops the channel;
  and the error reply to a SSUBSCRIBE sent to the wrong node (MOVED) is taken as the reply of the
  connection's next command.
- ``RedisCluster`` routes by a layout it refreshes only on errors its retry policy reports; with
  retries off (a retried publication may be delivered twice) a killed primary stayed in it, and the
  publications to its rooms kept failing long after its replica was promoted (over 7 s, measured).

So each primary has its own task, connection and client here (coredis's ``Redis``, through its
public connection API): a shard's failure is that shard's alone, publications go where the
subscriptions are, and a PING after each batch of (un)subscriptions is the barrier that confirms
them (or raises their error, such as MOVED).
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Callable, Collection, Iterable
from typing import Any, final

import trio

from ._redis_cluster_topology import Address, channel_name, key_slot, room_name
from ._redis_common import ReconnectDelay, RedisSettings

__all__ = ["ClusterShard"]

logger = logging.getLogger("trio_ws.broadcast")


def _by_slot(prefix: str, rooms: Iterable[str]) -> list[list[bytes]]:
    """The rooms' channels grouped by slot: one SSUBSCRIBE may name channels of one slot only."""
    groups: dict[int, list[bytes]] = collections.defaultdict(list)
    for room in rooms:
        channel = channel_name(prefix, room)
        groups[key_slot(channel)].append(channel)
    return list(groups.values())


@final
class ClusterShard:
    """One primary: :meth:`run` connects to it, brings the connection's shard channels to
    ``rooms()`` in batches, PINGs it (the health check, and the barrier that confirms a batch), and
    hands every message to ``deliver``; meanwhile ``client`` publishes there. It raises when the
    connection ends; the backend starts it again (or drops it, when that node serves no slot)."""

    def __init__(
        self,
        address: Address,
        url: str,
        settings: RedisSettings,
        *,
        rooms: Callable[[Address], Collection[str]],
        deliver: Callable[[str, bytes], None],
        changed: Callable[[], None],
        moved: Callable[[Address], None],
    ) -> None:
        self.address = address
        self.url = url
        self.settings = settings  # the backend's: prefix, health_interval, health_timeout, subscribe_timeout
        self.prefix = settings.prefix
        self.rooms = rooms  # the rooms this primary serves and this process wants
        self.deliver = deliver  # (room, data) of each message
        self.changed = changed  # readiness or subscriptions changed
        self.moved = moved  # the node dropped a channel: its slot moved, read the topology again
        self.subscribed: set[str] = set()  # confirmed on the current connection
        self.evicted: set[str] = set()  # dropped by the server: not asked for again before a new topology
        self.unsubscribing: collections.Counter[bytes] = collections.Counter()
        self.synced = False  # the current connection subscribed what was wanted when it started
        self.healthy = True  # the last PING (or publication) was answered in time
        self.wakeup = trio.Event()  # subscriptions to change, or health to check now
        self.reconnect = ReconnectDelay(settings.max_delay)  # the wait before the next reconnection
        self.client: Any = None  # a coredis.Redis of this primary, while connected

    @property
    def ready(self) -> bool:
        """Publications can go to this primary: subscribed, and it answers."""
        return self.synced and self.healthy

    def wake(self) -> None:
        """Bring the subscriptions to ``rooms()`` now."""
        self.wakeup.set()

    def suspect(self) -> None:
        """A publication to this shard failed or timed out: not ready until a PING is answered."""
        self.healthy = False
        self.changed()
        self.wakeup.set()

    def reset(self) -> None:
        """The connection ended: nothing is subscribed on it any more."""
        self.client = None
        self.subscribed = set()
        self.unsubscribing.clear()
        self.synced = False
        self.changed()

    async def run(self, coredis: Any) -> None:
        """Subscribe this primary's rooms and deliver their messages until the connection ends."""
        client = coredis.Redis.from_url(self.url, retry_policy=coredis.retry.NoRetryPolicy())
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(client)
            with trio.fail_after(self.settings.subscribe_timeout):  # a node that does not answer a connect
                connection = await stack.enter_async_context(client.connection_pool.acquire())
            stack.callback(connection.invalidate)  # subscribed: never back into the pool
            nursery = await stack.enter_async_context(trio.open_nursery())
            nursery.start_soon(self._read, connection)
            self.client = client  # publications use the pool's other connections
            await self._keep(connection)

    async def _keep(self, connection: Any) -> None:
        settings = self.settings
        while True:
            self.wakeup = trio.Event()
            wanted = set(self.rooms(self.address)) - self.evicted
            gone = self.subscribed - wanted
            new = wanted - self.subscribed
            if gone:
                self.subscribed -= gone  # not confirmed any more from now
                for group in _by_slot(self.prefix, gone):
                    self.unsubscribing.update(group)
                    connection.send_command(b"SUNSUBSCRIBE", *group)
            for group in _by_slot(self.prefix, new):
                connection.send_command(b"SSUBSCRIBE", *group)
            # The barrier: Redis answers in order, so the PONG comes once every command above took
            # effect; an error reply to one of them (a MOVED) is raised here instead.
            with trio.move_on_after(settings.health_timeout) as scope:
                await connection.create_request(b"PING", decode=False)
            answered = not scope.cancelled_caught
            if answered:
                self.subscribed |= new
                self.synced = True
                self.reconnect.reset()
            if answered != self.healthy:
                logger.warning(
                    "Redis Cluster node %s:%d %s",
                    *self.address,
                    "answers again"
                    if answered
                    else f"does not answer (no PONG within {settings.health_timeout} s)",
                )
                self.healthy = answered
            self.changed()
            if answered:
                with trio.move_on_after(settings.health_interval):
                    await self.wakeup.wait()

    async def _read(self, connection: Any) -> None:
        async with contextlib.aclosing(connection.push_messages) as pushes:
            async for push in pushes:
                kind = bytes(push[0])
                if kind == b"smessage":
                    self.deliver(room_name(self.prefix, bytes(push[1])), bytes(push[2]))
                elif kind == b"sunsubscribe":
                    channel = bytes(push[1])
                    if self.unsubscribing[channel] > 0:
                        self.unsubscribing[channel] -= 1
                        if not self.unsubscribing[channel]:
                            del self.unsubscribing[channel]
                        continue
                    # Not asked for: the slot left this node (resharding, or a failover that made
                    # it a replica). The room waits for the topology that names its new primary.
                    room = room_name(self.prefix, channel)
                    if room in self.subscribed:
                        self.subscribed.discard(room)
                        self.evicted.add(room)
                        self.changed()
                        self.moved(self.address)
