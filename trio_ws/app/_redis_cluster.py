"""The Redis Cluster backend of the broadcast hub: sharded pub/sub (Redis 7), through coredis (the
optional extra ``trio-ws[redis]``), so a room's traffic touches only the shard that serves it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import trio

from ..protocol import PreparedMessage
from ._history import HistoryPage, StreamPosition
from ._history_redis import RedisHistory, decode_message, encode_message
from ._presence_redis import RedisPresence
from ._redis_cluster_shard import ClusterShard
from ._redis_cluster_topology import (
    Address,
    ClusterTopology,
    channel_name,
    failure,
    key_slot,
    node_url,
    parse_address,
)

if TYPE_CHECKING:
    from ._broadcast import Hub

__all__ = ["RedisClusterBackend"]

logger = logging.getLogger("trio_ws.broadcast")

_T = TypeVar("_T")


class RedisClusterBackend:
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
    Redis does not take within ``publish_timeout``, or whose connection is lost on its way, raises
    ``TimeoutError`` (it may still be delivered) and marks its primary not ready until a PING is
    answered. ``subscribe()`` returns once the rooms' primaries confirmed the subscriptions, or
    after ``subscribe_timeout``; reconnecting backs off up to ``max_delay`` seconds. History and
    presence (``presence_ttl``, ``presence_interval``) work as with :class:`RedisBackend`.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:7000",
        *,
        startup_nodes: Collection[str] = (),
        prefix: str = "trio_ws:",
        presence_ttl: float = 30.0,
        presence_interval: float = 10.0,
        publish_timeout: float = 1.0,
        subscribe_timeout: float = 2.0,
        health_interval: float = 1.0,
        health_timeout: float = 0.5,
        max_delay: float = 2.0,
        refresh_interval: float = 0.25,
        topology_interval: float = 10.0,
    ) -> None:
        try:
            import coredis
        except ImportError:  # pragma: no cover - the test extra installs it
            raise ImportError("RedisClusterBackend needs coredis: pip install 'trio-ws[redis]'") from None
        if "{" in prefix or "}" in prefix:
            raise ValueError("prefix must not contain '{' or '}': the channel's hash tag is {<prefix><room>}")
        self._coredis = coredis
        self.url = url
        parts = urlsplit(url)
        self.startup_nodes = [(parts.hostname or "127.0.0.1", parts.port or 6379)]
        self.startup_nodes += [parse_address(node) for node in startup_nodes]
        self._tls = parts.scheme == "rediss"
        self.prefix = prefix
        self._history = RedisHistory(prefix, publish_command="SPUBLISH")
        self._presence = RedisPresence(prefix, presence_ttl, presence_interval, publish_timeout)
        self.presence_interval = presence_interval  #: between two rewrites of this process's entries
        self.publish_timeout = publish_timeout
        self.subscribe_timeout = subscribe_timeout
        self.health_interval = health_interval
        self.health_timeout = health_timeout
        self.max_delay = max_delay
        self.refresh_interval = refresh_interval
        self.topology_interval = topology_interval
        #: Set while every shard can take publications: connected, subscribed, and answering.
        self.ready = trio.Event()
        self._running = False
        self._topology = ClusterTopology()
        self._shards: dict[Address, ClusterShard] = {}
        self._scopes: dict[Address, trio.CancelScope] = {}
        self._wanted: dict[str, int] = {}  # rooms with local members -> their slot
        self._confirmed = trio.Event()  # set (and replaced) whenever a shard's state changed
        self._stale = trio.Event()  # read the topology again now
        self._moved: list[Address] = []  # nodes that dropped a channel since the last reading
        self._delay = 0.1  # before the next attempt to reach the cluster at all

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
        self._confirmed.set()
        self._confirmed = trio.Event()

    def _slot_moved(self, address: Address) -> None:
        self._moved.append(address)  # ask that node first: it knows where the slot went
        self._stale.set()

    def _subscribed(self, rooms: Collection[str]) -> bool:
        for room in rooms:
            shard = self._shard_of(room)
            if shard is None or room not in shard.subscribed:
                return False
        return True

    async def subscribe(self, rooms: Collection[str]) -> None:
        """Receive the messages of ``rooms``: returns once their primaries confirmed the
        subscriptions (a message published after that reaches this process), or after
        ``subscribe_timeout``."""
        for room in rooms:
            if room not in self._wanted:
                self._wanted[room] = key_slot(channel_name(self.prefix, room))
                shard = self._shard_of(room)
                if shard is not None:
                    shard.wake()
        with trio.move_on_after(self.subscribe_timeout) as scope:
            while not self._subscribed(rooms):
                await self._confirmed.wait()
        if scope.cancelled_caught:
            logger.warning(
                "Redis Cluster did not confirm the subscription within %.1f s", self.subscribe_timeout
            )
        await trio.lowlevel.checkpoint()

    def unsubscribe(self, rooms: Collection[str]) -> None:
        """Stop receiving ``rooms`` (they have no local member any more); done in the background."""
        for room in rooms:
            shard = self._shard_of(room)
            if self._wanted.pop(room, None) is not None and shard is not None:
                shard.wake()

    async def run(self, hub: Hub, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen for the hub's life: discover the cluster, subscribe on every primary, deliver;
        follow its topology; when the cluster cannot be reached at all, start again."""
        task_status.started()
        while True:
            try:
                await self._listen(hub)
            except BaseException as exc:
                logger.warning(
                    "Redis Cluster listener: %s; reconnecting in %.1f s", failure(exc), self._delay
                )
            finally:
                self._running = False
                for scope in self._scopes.values():
                    scope.cancel()
                self._shards, self._scopes, self._topology = {}, {}, ClusterTopology()
                self._changed()
            await trio.sleep(self._delay)
            self._delay = min(self._delay * 2, self.max_delay)

    async def _listen(self, hub: Hub) -> None:
        def deliver(room: str, data: bytes) -> None:
            decoded = decode_message(data)
            if decoded is None:
                logger.warning("a message not of trio_ws on room %r: dropped", room)
                return
            message, position, is_json = decoded
            hub.deliver_local(room, message, remote=True, position=position, is_json=is_json)

        async with trio.open_nursery() as nursery:
            self._running = True
            while True:
                self._stale = trio.Event()
                topology = await self._discover()
                if topology is None:
                    raise ConnectionError("no node of the Redis Cluster answers")
                self._install(topology, nursery, deliver)
                self._delay = 0.1
                wait = self.topology_interval if self.ready.is_set() else self.refresh_interval
                with trio.move_on_after(wait):
                    await self._stale.wait()

    async def _discover(self) -> ClusterTopology | None:
        """The topology as the first node that answers tells it: a node that just dropped a
        channel (it knows where the slot went), the primaries that answer us (they follow
        failovers), then every node seen, then the startup nodes."""
        ready = [address for address, shard in self._shards.items() if shard.ready]
        moved, self._moved = self._moved, []
        candidates = dict.fromkeys([*moved, *ready, *sorted(self._topology.nodes), *self.startup_nodes])
        retry = self._coredis.retry.NoRetryPolicy()
        for address in candidates:
            shard = self._shards.get(address)
            try:
                with trio.fail_after(self.subscribe_timeout):
                    if shard is not None and shard.client is not None:
                        return ClusterTopology.from_shards(await shard.client.cluster_shards(), tls=self._tls)
                    url = node_url(self.url, address)
                    async with self._coredis.Redis.from_url(url, retry_policy=retry) as node:
                        return ClusterTopology.from_shards(await node.cluster_shards(), tls=self._tls)
            except BaseException as exc:
                logger.debug("Redis Cluster node %s:%d: %s", *address, failure(exc))
        return None

    def _install(
        self, topology: ClusterTopology, nursery: trio.Nursery, deliver: Callable[[str, bytes], None]
    ) -> None:
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
                    prefix=self.prefix,
                    rooms=self._rooms_for,
                    deliver=deliver,
                    changed=self._changed,
                    moved=self._slot_moved,
                    health_interval=self.health_interval,
                    health_timeout=self.health_timeout,
                    subscribe_timeout=self.subscribe_timeout,
                )
                self._shards[address] = shard
                self._scopes[address] = trio.CancelScope()
                nursery.start_soon(self._keep_shard, shard, self._scopes[address])
        for shard in self._shards.values():
            if changed or shard.evicted:
                shard.evicted.clear()
                shard.wake()
        self._changed()

    async def _keep_shard(self, shard: ClusterShard, scope: trio.CancelScope) -> None:
        """Run a primary's subscriber until that node serves no slot: reconnect when it fails,
        and read the topology again (the cluster may be failing over)."""
        with scope:
            while True:
                try:
                    await shard.run(self._coredis)
                except BaseException as exc:
                    error = failure(exc)
                    logger.warning(
                        "Redis Cluster node %s:%d: %s; reconnecting in %.1f s",
                        *shard.address,
                        error,
                        shard.delay,
                    )
                    self._stale.set()
                finally:
                    shard.reset()
                await trio.sleep(shard.delay)
                shard.delay = min(shard.delay * 2, self.max_delay)

    async def publish(self, room: str, message: PreparedMessage) -> None:
        """Publish to every hub with members in ``room`` (this one included). Raises
        ``ConnectionError`` at once while the room's primary is not ready (nothing is sent),
        ``TimeoutError`` if it does not take it within ``publish_timeout`` or the connection is
        lost on its way (it may still be delivered later)."""
        channel, data = self.channel(room), encode_message(message)
        await self._command(room, lambda client: client.spublish(channel, data))

    async def append(
        self, room: str, message: PreparedMessage, *, is_json: bool, size: int, ttl: float
    ) -> StreamPosition:
        """Publish to ``room`` and keep the message in its history, in one step on the room's
        primary (see :class:`HistoryBackend`); raises as :meth:`publish` does."""
        history, channel = self._history, self.channel(room)
        return await self._command(
            room,
            lambda client: history.append(
                client, room, channel, message, is_json=is_json, size=size, ttl=ttl
            ),
        )

    async def read(self, room: str, *, since: StreamPosition | None, limit: int, ttl: float) -> HistoryPage:
        """Read ``room``'s history on its primary (see :class:`HistoryBackend`); raises as
        :meth:`publish` does."""
        history = self._history
        return await self._command(
            room, lambda client: history.read(client, room, since=since, limit=limit, ttl=ttl)
        )

    async def presence_update(
        self, room: str, add: Mapping[str, str], remove: Collection[str]
    ) -> list[tuple[str, str]]:
        """Write and delete this process's entries of ``room``; return those that expired."""
        return await self._presence.update(self._client_of(room), room, add, remove)

    async def presence_entries(self, room: str) -> list[tuple[str, str]]:
        """``room``'s entries that have not expired (client id, entry)."""
        return await self._presence.entries(self._client_of(room), room)

    async def presence_count(self, room: str) -> int:
        """How many entries ``room`` has that have not expired."""
        return await self._presence.count(self._client_of(room), room)

    def _client_of(self, room: str) -> Any:
        """The client of the primary serving ``room``, if it is ready."""
        shard = self._shard_of(room)
        return shard.client if shard is not None and shard.ready else None

    async def _command(self, room: str, send: Callable[[Any], Awaitable[_T]]) -> _T:
        """Run ``send(client)`` on the primary serving ``room``: ``ConnectionError`` at once while
        it is not ready, ``TimeoutError`` (and not ready until a PING is answered) after
        ``publish_timeout`` or a connection lost on the way."""
        shard = self._shard_of(room)
        client = None if shard is None else shard.client
        if shard is None or client is None or not shard.ready:
            await trio.lowlevel.checkpoint()
            raise ConnectionError("the Redis Cluster primary of this room is not available (failing over?)")
        try:
            with trio.fail_after(self.publish_timeout):
                return await send(client)
        except trio.TooSlowError:
            shard.suspect()  # the next commands to this primary fail fast until a PING is answered
            raise TimeoutError(
                f"Redis did not take the publication within {self.publish_timeout} s"
                " (it may still be delivered)"
            ) from None
        except self._coredis.exceptions.ConnectionError as exc:
            # coredis turns a cancellation while it connects into a ConnectionError: a
            # cancellation from outside goes on here, and ours (publish_timeout) is a timeout.
            await trio.lowlevel.checkpoint_if_cancelled()
            shard.suspect()
            raise TimeoutError(f"Redis Cluster: {exc} (it may have been delivered)") from exc
        except self._coredis.exceptions.MovedError:
            self._stale.set()  # the slot moved: refused, and the topology is stale
            raise
