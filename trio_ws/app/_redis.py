"""The Redis backend of the broadcast hub, through coredis (the optional extra ``trio-ws[redis]``;
coredis runs on trio through anyio)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

import trio

from ._redis_common import Listening, RedisBackendBase, RedisOptions

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["RedisBackend"]

logger = logging.getLogger("trio_ws.broadcast")


class RedisBackend(RedisBackendBase):
    """Rooms across processes and machines through Redis pub/sub.

    A process subscribes to the channel ``<prefix><room>`` of each room it has members in (when the
    first local member joins; it unsubscribes when the last one leaves; changes are batched, one
    SUBSCRIBE for a burst of joins), so it receives only the traffic of its own rooms. A message is
    published there with one byte for its type.

    ``ready`` is set while the listener is connected, every wanted room is subscribed and Redis
    answers: a publication while it is not set fails at once (``ConnectionError``) and is never
    sent. When Redis goes away, the listener reconnects (backing off up to ``max_delay`` seconds)
    and subscribes again. A health check PINGs Redis every ``health_interval`` seconds; a PING not
    answered within ``health_timeout``, or a publication Redis does not answer within
    ``publish_timeout`` or whose connection fails on its way (``TimeoutError``: it may have been
    delivered), clears ``ready`` until Redis answers again. ``subscribe()`` returns once Redis
    confirmed the subscription, or after ``subscribe_timeout`` if it does not (then the room is
    subscribed as soon as Redis is back).

    The history of a room (``hub.configure_room(room, history_size=...)``) is a Redis Stream,
    ``{<prefix><room>}:history``, beside a hash ``{<prefix><room>}:meta`` holding its epoch and last
    offset; one Lua script gives a publication its offset, appends it (``XADD MAXLEN``, ``PEXPIRE``
    for the ttl) and publishes it with its position, so the offsets follow the order of the channel.
    Appending and reading the history are refused and time out as publications are. A stream that
    Redis has behind the furthest offset this process saw of it (Redis lost publications: a
    failover, a restart from an older copy), or whose live offsets come twice, is started again
    with a new epoch rather than given those offsets again.

    Presence: each member has an entry under ``{<prefix><room>}:presence``; the hub rewrites this
    process's entries every ``presence_interval`` seconds, and an entry not rewritten expires
    ``presence_ttl`` seconds after its last write. A presence command is bounded by ``publish_timeout``.

    The options, the same for :class:`RedisClusterBackend`, and their defaults: ``prefix="trio_ws:"``,
    ``presence_ttl=30.0``, ``presence_interval=10.0``, ``publish_timeout=1.0``,
    ``subscribe_timeout=2.0``, ``health_interval=1.0``, ``health_timeout=0.5``, ``max_delay=2.0``
    (seconds). A time that is not a positive number raises ``ValueError``, an unknown option
    ``TypeError``; ``settings`` holds them.
    """

    _unavailable = "Redis is not available (reconnecting, or not answering)"

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", **options: Unpack[RedisOptions]) -> None:
        super().__init__("RedisBackend", options, sharded=False)
        self.url = url
        self._client: Any = None
        self._wanted: set[str] = set()  # rooms with local members
        self._subscribed: set[str] = set()  # rooms Redis confirmed, on the current connection
        self._changed = trio.Event()  # wakes the subscription task
        self._synced = False  # the current connection has subscribed what was wanted
        self._healthy = True  # the last PING (or publication) was answered in time
        self._suspect = trio.Event()  # a publication timed out: check health now

    @property
    def subscribed_rooms(self) -> frozenset[str]:
        """The rooms Redis confirmed this process is subscribed to."""
        return frozenset(self._subscribed)

    def _route(self, room: str) -> tuple[Any, Callable[[], None]]:
        client = self._client if self.ready.is_set() else None

        def suspect() -> None:  # the next commands fail fast until a PING is answered
            if client is self._client:
                self._healthy = False
                self._update_ready()
                self._suspect.set()

        return client, suspect

    def _channel(self, room: str) -> str:
        return self.prefix + room

    def _update_ready(self) -> None:
        if self._synced and self._healthy and self._client is not None:
            self.ready.set()
        elif self.ready.is_set():
            self.ready = trio.Event()

    def _confirmed_all(self, rooms: Collection[str]) -> bool:
        return self._subscribed.issuperset(rooms)

    def _want(self, rooms: Collection[str]) -> None:
        if not self._wanted.issuperset(rooms):
            self._wanted.update(rooms)
            self._changed.set()

    def unsubscribe(self, rooms: Collection[str]) -> None:
        """Stop receiving ``rooms`` (they have no local member any more); done in the background."""
        self._wanted.difference_update(rooms)
        self._changed.set()

    def _stopped(self) -> None:
        self._client = None
        self._synced = False
        self._subscribed = set()
        self._update_ready()

    async def _listen(self, listening: Listening) -> None:
        coredis, prefix = listening.coredis, self.prefix.encode()
        control = self.prefix + "\x00"  # keeps the connection subscribed while it has no room
        # Reconnecting is ours (a fresh client each time), not coredis's: its own retry left a
        # pubsub unsubscribed after a Redis restart, in one of two processes, here.
        no_retry = coredis.retry.NoRetryPolicy()
        client = coredis.Redis.from_url(self.url, retry_policy=no_retry)
        async with client:
            self._client = client
            self._changed = trio.Event()
            rooms = set(self._wanted)  # subscribed in the same command as the control channel
            channels = [control, *(self.prefix + room for room in rooms)]
            pubsub_manager = client.pubsub(
                channels=channels,
                ignore_subscribe_messages=True,
                retry_policy=no_retry,
                subscription_timeout=self.settings.subscribe_timeout,
            )
            async with pubsub_manager as pubsub, trio.open_nursery() as nursery:
                self._subscribed = rooms
                self._synced = True
                self._healthy = True
                listening.connected()
                self._confirm(listening)
                nursery.start_soon(self._keep_subscriptions, pubsub, listening)
                nursery.start_soon(self._check_health, client)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None or message["type"] != "message":
                        continue
                    channel = bytes(message["channel"])
                    if channel[len(prefix) :] == b"\x00":
                        continue
                    room = channel[len(prefix) :].decode("utf-8", "replace")
                    listening.deliver(room, bytes(message["data"]))

    def _confirm(self, listening: Listening) -> None:
        self._update_ready()
        listening.announce()

    async def _keep_subscriptions(self, pubsub: Any, listening: Listening) -> None:
        """Bring the connection's subscriptions to the wanted rooms, in batches: every change made
        while a command is on its way goes into the next one."""
        while True:
            if self._wanted == self._subscribed:
                await self._changed.wait()
            self._changed = trio.Event()
            gone = self._subscribed - self._wanted
            if gone:
                self._subscribed = self._subscribed - gone  # not confirmed any more from now
                await pubsub.unsubscribe(*(self.prefix + room for room in gone))
            new = self._wanted - self._subscribed
            if new:
                await pubsub.subscribe(*(self.prefix + room for room in new))
                self._subscribed = self._subscribed | new
                self._confirm(listening)

    async def _check_health(self, client: Any) -> None:
        """PING Redis: one not answered within ``health_timeout`` clears ``ready`` until one is."""
        settings = self.settings
        while True:
            with trio.move_on_after(settings.health_timeout) as scope:
                await client.ping()
            answered = not scope.cancelled_caught
            if answered != self._healthy:
                if answered:
                    logger.warning("Redis answers again")
                else:
                    logger.warning("Redis does not answer (no PONG within %.1f s)", settings.health_timeout)
                self._healthy = answered
                self._update_ready()
            if answered:
                self._suspect = trio.Event()
                with trio.move_on_after(settings.health_interval):
                    await self._suspect.wait()
