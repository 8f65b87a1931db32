"""The Redis Cluster backend of the broadcast hub: sharded pub/sub (Redis 7), through coredis (the
optional extra ``trio-ws[redis]``), so a room's traffic touches only the shard that serves it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import trio

from ._redis_cluster_shard import ClusterShard
from ._redis_cluster_topology import Address, ClusterTopology, channel_name, key_slot, node_url, parse_address
from ._redis_common import Listening, RedisBackendBase, RedisOptions, failure

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["RedisClusterBackend"]

logger = logging.getLogger("trio_ws.broadcast")


class RedisClusterBackend(RedisBackendBase):
    """Rooms across processes and machines through a Redis Cluster's sharded pub/sub (Redis 7).

    A room's messages go through the shard channel ``{<prefix><room>}`` (SPUBLISH / SSUBSCRIBE):
    its slot, and so the primary that carries its traffic, follows from the room's name; the room's
    history and presence keys carry the same hash tag, so they live in that slot too. A process
    subscribes, on the primary serving each room, to the rooms it has members in (when the first
    local member joins; it unsubscribes when the last one leaves; batched, one round trip per
    primary for a burst of joins). ``url`` names one node of the cluster (``startup_nodes``,
    ``"host:port"`` strings, name more, for a cluster whose first node may be down); the rest is
    discovered (``CLUSTER SHARDS``).

    Each primary has its own subscriber connection, health check, reconnection and client (which
    publishes, and runs the rooms' history and presence scripts there), so a primary's failure
    stops only the rooms it serves. When a connection is lost, a slot leaves a node, or a command
    meets a MOVED, the topology is read again (every ``refresh_interval`` seconds until every shard
    is back; every ``topology_interval`` otherwise) and the affected rooms are subscribed on their
    new primary: after a primary is killed, its rooms come back once its replica is promoted
    (``docs/scaling.md`` gives the bound measured).

    ``ready`` is set while every slot has a primary and every primary's subscriber is connected,
    subscribed and answers its PINGs (every ``health_interval`` seconds, within
    ``health_timeout``). A publication fails at once (``ConnectionError``, never sent) while its
    room's primary is not ready, so a failover costs its own rooms' publications only; one that
    Redis does not answer within ``publish_timeout``, or whose connection fails on its way, raises
    ``TimeoutError`` (it may have been delivered) and marks its primary not ready until a PING is
    answered. ``subscribe()`` returns once the rooms' primaries confirmed the subscriptions, or
    after ``subscribe_timeout``; reconnecting backs off up to ``max_delay`` seconds. History and
    presence (``presence_ttl``, ``presence_interval``) work as with :class:`RedisBackend`; a room's
    history that a failover left behind what this process saw of it (the replica had not received
    the last publications) is started again with a new epoch, so members coming back are told they
    missed some instead of being given other messages at those offsets.

    Besides ``url``, ``startup_nodes``, ``refresh_interval`` and ``topology_interval``, it takes the
    options of :class:`RedisBackend` (``prefix`` without braces, else ``ValueError``).
    """

    _unavailable = "the Redis Cluster primary of this room is not available (failing over?)"

    def __init__(
        self,
        url: str = "redis://127.0.0.1:7000",
        *,
        startup_nodes: Collection[str] = (),
        refresh_interval: float = 0.25,
        topology_interval: float = 10.0,
        **options: Unpack[RedisOptions],
    ) -> None:
        if "{" in options.get("prefix", "") or "}" in options.get("prefix", ""):
            raise ValueError("prefix must not contain '{' or '}': the channel's hash tag is {<prefix><room>}")
        super().__init__("RedisClusterBackend", options, sharded=True)
        self.url = url
        parts = urlsplit(url)
        self.startup_nodes = [(parts.hostname or "127.0.0.1", parts.port or 6379)]
        self.startup_nodes += [parse_address(node) for node in startup_nodes]
        self._tls = parts.scheme == "rediss"
        self.refresh_interval = refresh_interval
        self.topology_interval = topology_interval
        self._running = False
        self._topology = ClusterTopology()
        self._shards: dict[Address, ClusterShard] = {}
        self._scopes: dict[Address, trio.CancelScope] = {}
        self._wanted: dict[str, int] = {}  # rooms with local members -> their slot
        self._stale = trio.Event()  # read the topology again now
        self._moved_from: list[Address] = []  # nodes that dropped a channel since the last reading
        self._listening: Listening | None = None

    def channel(self, room: str) -> str:
        """The shard channel of ``room``: ``{<prefix><room>}``."""
        return channel_name(self.prefix, room).decode()

    @property
    def subscribed_rooms(self) -> frozenset[str]:
        """The rooms their primaries confirmed this process is subscribed to."""
        return frozenset(room for shard in self._shards.values() for room in shard.subscribed)

    def _shard_of(self, room: str) -> ClusterShard | None:
        slot = self._wanted.get(room)
        if slot is None:
            slot = key_slot(channel_name(self.prefix, room))
        owner = self._topology.owners[slot]
        return None if owner is None else self._shards.get(owner)

    def _rooms_for(self, address: Address) -> list[str]:
        owners = self._topology.owners
        return [room for room, slot in self._wanted.items() if owners[slot] == address]

    def _changed(self) -> None:
        shards, complete = self._shards, self._topology.complete
        if self._running and complete and all(shard.ready for shard in shards.values()):
            self.ready.set()
        elif self.ready.is_set():
            self.ready = trio.Event()
        if self._listening is not None:
            self._listening.announce()

    def _slot_moved(self, address: Address) -> None:
        self._moved_from.append(address)  # ask that node first: it knows where the slot went
        self._stale.set()

    def _confirmed_all(self, rooms: Collection[str]) -> bool:
        for room in rooms:
            shard = self._shard_of(room)
            if shard is None or room not in shard.subscribed:
                return False
        return True

    def _want(self, rooms: Collection[str]) -> None:
        for room in rooms:
            if room not in self._wanted:
                self._wanted[room] = key_slot(channel_name(self.prefix, room))
                shard = self._shard_of(room)
                if shard is not None:
                    shard.wake()

    def unsubscribe(self, rooms: Collection[str]) -> None:
        """Stop receiving ``rooms`` (they have no local member any more); done in the background."""
        for room in rooms:
            shard = self._shard_of(room)
            if self._wanted.pop(room, None) is not None and shard is not None:
                shard.wake()

    def _stopped(self) -> None:
        self._running = False
        for scope in self._scopes.values():
            scope.cancel()
        self._shards, self._scopes, self._topology = {}, {}, ClusterTopology()
        self._changed()

    async def _listen(self, listening: Listening) -> None:
        self._listening, self._running = listening, True
        while True:
            self._stale = trio.Event()
            topology = await self._discover(listening.coredis)
            if topology is None:
                raise ConnectionError("no node of the Redis Cluster answers")
            self._install(topology, listening)
            listening.connected()
            wait = self.topology_interval if self.ready.is_set() else self.refresh_interval
            with trio.move_on_after(wait):
                await self._stale.wait()

    async def _discover(self, coredis: Any) -> ClusterTopology | None:
        """The topology as the first node that answers tells it: a node that just dropped a
        channel (it knows where the slot went), the primaries that answer us (they follow
        failovers), then every node seen, then the startup nodes."""
        ready = [address for address, shard in self._shards.items() if shard.ready]
        moved, self._moved_from = self._moved_from, []
        candidates = dict.fromkeys([*moved, *ready, *sorted(self._topology.nodes), *self.startup_nodes])
        retry = coredis.retry.NoRetryPolicy()
        for address in candidates:
            shard = self._shards.get(address)
            try:
                with trio.fail_after(self.settings.subscribe_timeout):
                    if shard is not None and shard.client is not None:
                        return ClusterTopology.from_shards(await shard.client.cluster_shards(), tls=self._tls)
                    url = node_url(self.url, address)
                    async with coredis.Redis.from_url(url, retry_policy=retry) as node:
                        return ClusterTopology.from_shards(await node.cluster_shards(), tls=self._tls)
            except BaseException as exc:
                logger.debug("Redis Cluster node %s:%d: %s", *address, failure(exc))
        return None

    def _install(self, topology: ClusterTopology, listening: Listening) -> None:
        """Follow the topology: a subscriber for each new primary, none for a node that serves no
        slot any more, and every subscriber brings its rooms to what it now serves (the rooms a
        node dropped are asked for again wherever the topology now puts them)."""
        changed = topology != self._topology
        if changed:
            self._topology = topology
            primaries = topology.primaries
            for address in [address for address in self._shards if address not in primaries]:
                self._scopes.pop(address).cancel()
                del self._shards[address]
            for address in primaries - self._shards.keys():
                shard = ClusterShard(
                    address,
                    node_url(self.url, address),
                    self.settings,
                    rooms=self._rooms_for,
                    deliver=listening.deliver,
                    changed=self._changed,
                    moved=self._slot_moved,
                )
                self._shards[address] = shard
                self._scopes[address] = trio.CancelScope()
                listening.nursery.start_soon(
                    self._keep_shard, shard, self._scopes[address], listening.coredis
                )
        for shard in self._shards.values():
            if changed or shard.evicted:
                shard.evicted.clear()
                shard.wake()
        self._changed()

    async def _keep_shard(self, shard: ClusterShard, scope: trio.CancelScope, coredis: Any) -> None:
        """Run a primary's subscriber until that node serves no slot: reconnect when it fails,
        and read the topology again (the cluster may be failing over)."""
        with scope:
            while True:
                try:
                    await shard.run(coredis)
                except BaseException as exc:
                    error = failure(exc)
                    logger.warning(
                        "Redis Cluster node %s:%d: %s; reconnecting in %.1f s",
                        *shard.address,
                        error,
                        shard.reconnect.delay,
                    )
                    self._stale.set()
                finally:
                    shard.reset()
                await shard.reconnect.wait()

    def _channel(self, room: str) -> str:
        return self.channel(room)

    def _route(self, room: str) -> tuple[Any, Callable[[], None]]:
        shard = self._shard_of(room)
        if shard is None or not shard.ready:
            return None, _nothing
        return shard.client, shard.suspect

    def _moved(self) -> None:
        self._stale.set()  # read the topology again


def _nothing() -> None:
    pass
