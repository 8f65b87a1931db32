"""The Redis backend of the broadcast hub, through coredis (the optional extra ``trio-ws[redis]``;
coredis runs on trio through anyio)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from ..protocol import PreparedMessage
from ._history import HistoryPage, StreamPosition
from ._history_redis import RedisHistory, decode_message, encode_message
from ._presence_redis import RedisPresence

if TYPE_CHECKING:
    from ._broadcast import Hub

if sys.version_info < (3, 11):  # pragma: no cover - trio depends on the backport there
    from exceptiongroup import BaseExceptionGroup

__all__ = ["RedisBackend"]

logger = logging.getLogger("trio_ws.broadcast")

_T = TypeVar("_T")


class RedisBackend:
    """Rooms across processes and machines through Redis pub/sub.

    A process subscribes to the channel ``<prefix><room>`` of each room it has members in (when the
    first local member joins; it unsubscribes when the last one leaves; changes are batched, one
    SUBSCRIBE for a burst of joins), so it receives only the traffic of its own rooms. A message is
    published there with one byte for its type.

    ``ready`` is set while the listener is connected, every wanted room is subscribed and Redis
    answers: a publication while it is not set fails at once (``ConnectionError``) and is never
    sent. When Redis goes away, the listener reconnects (backing off up to ``max_delay`` seconds)
    and subscribes again. A health check PINGs Redis every ``health_interval`` seconds; a PING not
    answered within ``health_timeout``, or a publication Redis does not take within
    ``publish_timeout`` (``TimeoutError``), clears ``ready`` until Redis answers again. A
    publication that timed out may still be delivered later. ``subscribe()`` returns once Redis
    confirmed the subscription, or after ``subscribe_timeout`` if it does not (then the room is
    subscribed as soon as Redis is back).

    The history of a room (``hub.configure_room(room, history_size=...)``) is a Redis Stream,
    ``{<prefix><room>}:history``, beside a hash ``{<prefix><room>}:meta`` holding its epoch and last
    offset; one Lua script gives a publication its offset, appends it (``XADD MAXLEN``, ``PEXPIRE``
    for the ttl) and publishes it with its position, so the offsets follow the order of the channel.
    Appending and reading the history are refused and time out as publications are.

    Presence: each member has an entry under ``{<prefix><room>}:presence``; the hub rewrites this
    process's entries every ``presence_interval`` seconds, and an entry not rewritten expires
    ``presence_ttl`` seconds after its last write. A presence command is bounded by ``publish_timeout``.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "trio_ws:",
        presence_ttl: float = 30.0,
        presence_interval: float = 10.0,
        publish_timeout: float = 1.0,
        subscribe_timeout: float = 2.0,
        health_interval: float = 1.0,
        health_timeout: float = 0.5,
        max_delay: float = 2.0,
    ) -> None:
        try:
            import coredis
        except ImportError:  # pragma: no cover - the test extra installs it
            raise ImportError("RedisBackend needs coredis: pip install 'trio-ws[redis]'") from None
        self._coredis = coredis
        self.url = url
        self.prefix = prefix
        self._presence = RedisPresence(prefix, presence_ttl, presence_interval, publish_timeout)
        self.presence_interval = presence_interval  #: between two rewrites of this process's entries
        self.publish_timeout = publish_timeout
        self.subscribe_timeout = subscribe_timeout
        self.health_interval = health_interval
        self.health_timeout = health_timeout
        self.max_delay = max_delay
        #: Set while publications can be sent: connected, subscribed, and Redis answers.
        self.ready = trio.Event()
        self._client: Any = None
        self._wanted: set[str] = set()  # rooms with local members
        self._subscribed: set[str] = set()  # rooms Redis confirmed, on the current connection
        self._changed = trio.Event()  # wakes the subscription task
        self._confirmed = trio.Event()  # set (and replaced) after each confirmed SUBSCRIBE
        self._synced = False  # the current connection has subscribed what was wanted
        self._healthy = True  # the last PING (or publication) was answered in time
        self._delay = 0.1  # before the next reconnection
        self._suspect = trio.Event()  # a publication timed out: check health now
        self._history = RedisHistory(prefix)

    @property
    def subscribed_rooms(self) -> frozenset[str]:
        """The rooms Redis confirmed this process is subscribed to."""
        return frozenset(self._subscribed)

    async def presence_update(
        self, room: str, add: Mapping[str, str], remove: Collection[str]
    ) -> list[tuple[str, str]]:
        """Write and delete this process's entries of ``room``; return those that expired."""
        return await self._presence.update(self._client if self.ready.is_set() else None, room, add, remove)

    async def presence_entries(self, room: str) -> list[tuple[str, str]]:
        """``room``'s entries that have not expired (client id, entry)."""
        return await self._presence.entries(self._client if self.ready.is_set() else None, room)

    async def presence_count(self, room: str) -> int:
        """How many entries ``room`` has that have not expired."""
        return await self._presence.count(self._client if self.ready.is_set() else None, room)

    def _update_ready(self) -> None:
        if self._synced and self._healthy and self._client is not None:
            self.ready.set()
        elif self.ready.is_set():
            self.ready = trio.Event()

    async def subscribe(self, rooms: Collection[str]) -> None:
        """Receive the messages of ``rooms``: returns once Redis confirmed the subscription (a
        message published after that reaches this process), or after ``subscribe_timeout``."""
        if not self._wanted.issuperset(rooms):
            self._wanted.update(rooms)
            self._changed.set()
        with trio.move_on_after(self.subscribe_timeout) as scope:
            while not self._subscribed.issuperset(rooms):
                await self._confirmed.wait()
        if scope.cancelled_caught:
            logger.warning("Redis did not confirm the subscription within %.1f s", self.subscribe_timeout)
        await trio.lowlevel.checkpoint()

    def unsubscribe(self, rooms: Collection[str]) -> None:
        """Stop receiving ``rooms`` (they have no local member any more); done in the background."""
        self._wanted.difference_update(rooms)
        self._changed.set()

    async def run(self, hub: Hub, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen for the hub's life: connect, subscribe, deliver; on any failure, start again."""
        task_status.started()
        while True:
            try:
                await self._listen(hub)
            except BaseException as exc:
                # coredis's own tasks can fail with ConnectionError next to our Cancelled (a hub
                # closing while Redis is away): the cancellation goes on, the rest is dropped.
                cancelled = _cancelled(exc)
                if cancelled is not None:
                    raise cancelled from None
                if not isinstance(exc, Exception):
                    raise
                logger.warning("Redis listener: %s; reconnecting in %.1f s", _first_leaf(exc), self._delay)
            finally:
                self._client = None
                self._synced = False
                self._subscribed = set()
                self._update_ready()
            await trio.sleep(self._delay)
            self._delay = min(self._delay * 2, self.max_delay)

    async def _listen(self, hub: Hub) -> None:
        prefix = self.prefix.encode()
        control = self.prefix + "\x00"  # keeps the connection subscribed while it has no room
        # Reconnecting is ours (a fresh client each time), not coredis's: its own retry left a
        # pubsub unsubscribed after a Redis restart, in one of two processes, here.
        no_retry = self._coredis.retry.NoRetryPolicy()
        client = self._coredis.Redis.from_url(self.url, retry_policy=no_retry)
        async with client:
            self._client = client
            self._changed = trio.Event()
            rooms = set(self._wanted)  # subscribed in the same command as the control channel
            channels = [control, *(self.prefix + room for room in rooms)]
            pubsub_manager = client.pubsub(
                channels=channels,
                ignore_subscribe_messages=True,
                retry_policy=no_retry,
                subscription_timeout=self.subscribe_timeout,
            )
            async with pubsub_manager as pubsub, trio.open_nursery() as nursery:
                self._subscribed = rooms
                self._synced = True
                self._healthy = True
                self._delay = 0.1
                self._confirm()
                nursery.start_soon(self._keep_subscriptions, pubsub)
                nursery.start_soon(self._check_health, client)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None or message["type"] != "message":
                        continue
                    channel = bytes(message["channel"])  # type: ignore[arg-type]
                    if channel[len(prefix) :] == b"\x00":
                        continue
                    decoded = decode_message(bytes(message["data"]))  # type: ignore[arg-type]
                    if decoded is None:
                        logger.warning("a message not of trio_ws on %r: dropped", channel)
                        continue
                    room = channel[len(prefix) :].decode("utf-8", "replace")
                    data, position, is_json = decoded
                    hub.deliver_local(room, data, remote=True, position=position, is_json=is_json)

    def _confirm(self) -> None:
        self._update_ready()
        self._confirmed.set()
        self._confirmed = trio.Event()

    async def _keep_subscriptions(self, pubsub: Any) -> None:
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
                self._confirm()

    async def _check_health(self, client: Any) -> None:
        """PING Redis: one not answered within ``health_timeout`` clears ``ready`` until one is."""
        while True:
            with trio.move_on_after(self.health_timeout) as scope:
                await client.ping()
            answered = not scope.cancelled_caught
            if answered != self._healthy:
                if answered:
                    logger.warning("Redis answers again")
                else:
                    logger.warning("Redis does not answer (no PONG within %.1f s)", self.health_timeout)
                self._healthy = answered
                self._update_ready()
            if answered:
                self._suspect = trio.Event()
                with trio.move_on_after(self.health_interval):
                    await self._suspect.wait()

    async def publish(self, room: str, message: PreparedMessage) -> None:
        """Publish to every hub with members in ``room`` (this one included). Raises
        ``ConnectionError`` at once while ``ready`` is not set (nothing is sent), ``TimeoutError``
        if Redis does not take it within ``publish_timeout`` (it may still be delivered later)."""
        data = encode_message(message)
        await self._command(lambda client: client.publish(self.prefix + room, data))

    async def append(
        self, room: str, message: PreparedMessage, *, is_json: bool, size: int, ttl: float
    ) -> StreamPosition:
        """Publish to ``room`` and keep the message in its history, in one step (see
        :class:`HistoryBackend`); raises as :meth:`publish` does."""
        history, channel = self._history, self.prefix + room
        return await self._command(
            lambda client: history.append(client, room, channel, message, is_json=is_json, size=size, ttl=ttl)
        )

    async def read(self, room: str, *, since: StreamPosition | None, limit: int, ttl: float) -> HistoryPage:
        """Read ``room``'s history (see :class:`HistoryBackend`); raises as :meth:`publish` does."""
        history = self._history
        return await self._command(
            lambda client: history.read(client, room, since=since, limit=limit, ttl=ttl)
        )

    async def _command(self, send: Callable[[Any], Awaitable[_T]]) -> _T:
        """Run ``send(client)``: at once ``ConnectionError`` while not ready, ``TimeoutError`` (and
        not ready until a PING is answered) after ``publish_timeout``."""
        client = self._client
        if client is None or not self.ready.is_set():
            await trio.lowlevel.checkpoint()
            raise ConnectionError("Redis is not available (reconnecting, or not answering)")
        try:
            with trio.fail_after(self.publish_timeout):
                return await send(client)
        except trio.TooSlowError:
            if client is self._client:
                self._healthy = False  # the next publications fail fast until a PING is answered
                self._update_ready()
                self._suspect.set()
            raise TimeoutError(
                f"Redis did not take the publication within {self.publish_timeout} s"
                " (it may still be delivered)"
            ) from None


def _first_leaf(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups: what to tell in a log line."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _cancelled(exc: BaseException) -> trio.Cancelled | None:
    """A ``trio.Cancelled`` in ``exc`` (itself, or in nested exception groups), if any."""
    if isinstance(exc, trio.Cancelled):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _cancelled(inner)
            if found is not None:
                return found
    return None
