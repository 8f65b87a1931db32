"""What the two Redis backends share (:class:`RedisBackend` and :class:`RedisClusterBackend`): their
options, coredis (the optional extra ``trio-ws[redis]``), the listener's life with its reconnection
backoff, one command bounded by a timeout, the live messages they receive, and the rooms' history
and presence in Redis.

Each backend finds the client for a room's commands (``_route``: one Redis, or the room's primary)
and listens in its own way (``_listen``); :class:`RedisBackendBase` does the rest.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, final

import attrs
import trio

from ..client import Backoff
from ..protocol import PreparedMessage
from ._history import HistoryPage, StreamPosition
from ._history_redis import RedisHistory, decode_message, encode_message
from ._presence_redis import RedisPresence

if TYPE_CHECKING:
    from ._broadcast import Hub

if sys.version_info < (3, 11):  # pragma: no cover - trio depends on the backport there
    from exceptiongroup import BaseExceptionGroup

__all__ = [
    "Listening",
    "ReconnectDelay",
    "RedisBackendBase",
    "RedisOptions",
    "RedisSettings",
    "failure",
    "run_command",
]

logger = logging.getLogger("trio_ws.broadcast")

_T = TypeVar("_T")


class RedisOptions(TypedDict, total=False):
    """The keyword options of both Redis backends (the defaults are :class:`RedisSettings`'s)."""

    prefix: str
    presence_ttl: float
    presence_interval: float
    publish_timeout: float
    subscribe_timeout: float
    health_interval: float
    health_timeout: float
    max_delay: float


def _positive(instance: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ValueError(f"{attribute.name} must be a positive number of seconds, not {value!r}")


@attrs.frozen(kw_only=True)
class RedisSettings:
    """The options of a Redis backend, checked (:class:`RedisOptions` names them)."""

    prefix: str = "trio_ws:"  #: of every channel and key
    presence_ttl: float = attrs.field(default=30.0, validator=_positive)  #: a presence entry's life
    presence_interval: float = attrs.field(default=10.0, validator=_positive)  #: between rewrites
    publish_timeout: float = attrs.field(default=1.0, validator=_positive)  #: bounds every command
    subscribe_timeout: float = attrs.field(default=2.0, validator=_positive)  #: a join's wait at most
    health_interval: float = attrs.field(default=1.0, validator=_positive)  #: between two PINGs
    health_timeout: float = attrs.field(default=0.5, validator=_positive)  #: for a PONG
    max_delay: float = attrs.field(default=2.0, validator=_positive)  #: the longest reconnection backoff


@final
class ReconnectDelay:
    """The wait before reconnecting: a :class:`~trio_ws.Backoff` from 0.1 s, twice as long after
    each failure, up to ``max_delay``, without jitter."""

    def __init__(self, max_delay: float) -> None:
        self._backoff = Backoff(initial_delay=min(0.1, max_delay), max_delay=max_delay, jitter=0.0)
        self.reset()

    def reset(self) -> None:
        """Connected: the next failure waits the first delay again."""
        self._delays = self._backoff.delays()
        self.delay = next(self._delays)  #: the next wait

    async def wait(self) -> None:
        await trio.sleep(self.delay)
        self.delay = next(self._delays)


def failure(exc: BaseException) -> BaseException:
    """What to log of a listener's failure (a group's first leaf); a cancellation, or anything but an
    ``Exception``, is raised again instead. coredis's own tasks can fail with a ConnectionError
    next to our Cancelled (closing while Redis is away): the cancellation goes on alone."""
    if isinstance(exc, BaseExceptionGroup):
        cancelled: BaseException | None = exc.split(trio.Cancelled)[0]
        while isinstance(cancelled, BaseExceptionGroup):
            cancelled = cancelled.exceptions[0]
        if cancelled is not None:
            raise cancelled from None
        if exc.split(Exception)[1] is not None:
            raise exc
        while isinstance(exc, BaseExceptionGroup):
            exc = exc.exceptions[0]
    elif not isinstance(exc, Exception):
        raise exc
    return exc


async def run_command(
    client: Any,
    send: Callable[[Any], Awaitable[_T]],
    *,
    within: float,
    suspect: Callable[[], None],
    coredis: Any,
    unavailable: str,
) -> _T:
    """Run ``send(client)``, what a publication, a history read or append is. Raises:

    - ``ConnectionError`` when Redis did not take it: at once without a ``client`` (not ready), or
      when Redis refused it because it is loading its data; other refusals (MOVED, NOREPLICAS, a
      script error) are raised as coredis raises them. Nothing happened in Redis.
    - ``TimeoutError`` when it is not known whether Redis took it: no answer ``within`` seconds, or
      the connection failed on its way (coredis cannot tell a request not yet written from one
      Redis ran and could not answer; the latter was seen with a primary killed mid-traffic). It
      may have been delivered. ``suspect()`` is called first: the connection is not to be trusted
      until a PING is answered.
    """
    if client is None:
        await trio.lowlevel.checkpoint()
        raise ConnectionError(unavailable)
    try:
        with trio.fail_after(within):
            return await send(client)
    except trio.TooSlowError:
        suspect()
        raise TimeoutError(f"Redis did not answer within {within} s (it may still be delivered)") from None
    except coredis.exceptions.BusyLoadingError as exc:
        suspect()
        raise ConnectionError("Redis is loading its data: refused") from exc
    except coredis.exceptions.ConnectionError as exc:
        # coredis turns a cancellation while it connects into a ConnectionError: a cancellation
        # from outside goes on here, and ours (``within``) is a timeout.
        await trio.lowlevel.checkpoint_if_cancelled()
        suspect()
        raise TimeoutError(
            f"the connection to Redis failed on the way: {exc} (it may have been delivered)"
        ) from exc


@final
class Listening:
    """What a backend's listener is given, once per connection attempt: coredis, and the calls into
    the part the backends share (the tasks it starts run in ``nursery``, for the attempt's life)."""

    def __init__(self, backend: RedisBackendBase, hub: Hub, nursery: trio.Nursery) -> None:
        self.coredis = backend._coredis  #: the coredis module
        self.hub = hub
        self.nursery = nursery
        self._backend = backend

    def connected(self) -> None:
        """Redis answered: the next reconnection waits the first delay again."""
        self._backend._reconnect.reset()

    def announce(self) -> None:
        """Subscriptions or readiness changed: wake the joins waiting for theirs."""
        self._backend._announce()

    def deliver(self, room: str, data: bytes) -> None:
        """A message from ``room``'s channel, for the hub's members. One whose offset was received
        before (Redis lost publications and gave their offsets again) ends its stream's epoch."""
        decoded = decode_message(data)
        if decoded is None:
            logger.warning("a message not of trio_ws on room %r: dropped", room)
            return
        message, position, is_json = decoded
        if position is not None and self._backend._history.saw_live(room, position):
            logger.warning(
                "room %r: offset %d of its history came again (Redis lost publications, a failover?):"
                " that stream ends, the next one has a new epoch",
                room,
                position.offset,
            )
            self.nursery.start_soon(self._backend._retire, room, position.epoch)
        self.hub.deliver_local(room, message, remote=True, position=position, is_json=is_json)


class RedisBackendBase:
    """The part of a Redis backend that does not depend on how Redis is laid out: the listener's
    life (:meth:`run`), joins, publications, the rooms' history and presence, each command bounded
    (:func:`run_command`). A subclass implements the hooks below; its listener gets a
    :class:`Listening`."""

    _unavailable = "Redis is not available"  # why a command is refused while its room has no client

    def __init__(self, name: str, options: RedisOptions, *, sharded: bool) -> None:
        try:
            import coredis
        except ImportError:  # pragma: no cover - the test extra installs it
            raise ImportError(f"{name} needs coredis: pip install 'trio-ws[redis]'") from None
        self._coredis: Any = coredis
        self.settings = settings = RedisSettings(**options)  #: the options, checked
        self.prefix = settings.prefix
        self.presence_interval = settings.presence_interval  #: between two rewrites of this process's entries
        self._presence = RedisPresence(
            settings.prefix, settings.presence_ttl, settings.presence_interval, settings.publish_timeout
        )
        self._history = RedisHistory(settings.prefix, publish_command="SPUBLISH" if sharded else "PUBLISH")
        self._sharded = sharded
        self._reconnect = ReconnectDelay(settings.max_delay)
        self._confirmed = trio.Event()  # set (and replaced) whenever subscriptions or readiness changed
        #: Set while publications can be sent (see the backend's documentation).
        self.ready = trio.Event()

    # ------------------------------------------------------------ the hooks

    def _route(self, room: str) -> tuple[Any, Callable[[], None]]:
        """The client for ``room``'s commands (``None`` while not ready) and what to call when one of
        them timed out or lost its connection."""
        raise NotImplementedError

    def _channel(self, room: str) -> str:
        """The channel of ``room``."""
        raise NotImplementedError

    def _want(self, rooms: Collection[str]) -> None:
        """Subscribe ``rooms`` (in the background)."""
        raise NotImplementedError

    def _confirmed_all(self, rooms: Collection[str]) -> bool:
        """Whether Redis confirmed the subscriptions of every room of ``rooms``."""
        raise NotImplementedError

    async def _listen(self, listening: Listening) -> None:
        """Connect, subscribe and deliver until something fails (then it raises)."""
        raise NotImplementedError

    def _stopped(self) -> None:
        """The listener ended: nothing is subscribed any more."""
        raise NotImplementedError

    def _moved(self) -> None:
        """A command met a MOVED: the room's slot is served by another node now."""

    # ------------------------------------------------------------ the listener, joins

    async def run(self, hub: Hub, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen for the hub's life: connect, subscribe, deliver; on any failure, start again
        (after 0.1 s, then twice as long each time, up to ``max_delay``)."""
        task_status.started()
        while True:
            try:
                async with trio.open_nursery() as nursery:
                    await self._listen(Listening(self, hub, nursery))
            except BaseException as exc:
                name = type(self).__name__
                logger.warning("%s: %s; reconnecting in %.1f s", name, failure(exc), self._reconnect.delay)
            finally:
                self._stopped()
                self._announce()
            await self._reconnect.wait()

    def _announce(self) -> None:
        self._confirmed.set()
        self._confirmed = trio.Event()

    async def subscribe(self, rooms: Collection[str]) -> None:
        """Receive the messages of ``rooms``: returns once Redis confirmed the subscriptions (a
        message published after that reaches this process), or after ``subscribe_timeout`` (then
        they are subscribed as soon as Redis can be)."""
        self._want(rooms)
        timeout = self.settings.subscribe_timeout
        with trio.move_on_after(timeout) as scope:
            while not self._confirmed_all(rooms):
                await self._confirmed.wait()
        if scope.cancelled_caught:
            name = type(self).__name__
            logger.warning("%s: Redis did not confirm the subscription within %.1f s", name, timeout)
        await trio.lowlevel.checkpoint()

    async def _retire(self, room: str, epoch: str) -> None:
        history = self._history
        try:
            await self._command(room, lambda client: history.retire(client, room, epoch))
        except Exception as exc:  # the next command to the room ends it instead
            logger.warning("room %r: its epoch could not be ended now (%s)", room, exc)

    # ------------------------------------------------------------ commands

    async def _command(self, room: str, send: Callable[[Any], Awaitable[_T]]) -> _T:
        client, suspect = self._route(room)
        try:
            return await run_command(
                client,
                send,
                within=self.settings.publish_timeout,
                suspect=suspect,
                coredis=self._coredis,
                unavailable=self._unavailable,
            )
        except self._coredis.exceptions.MovedError:
            self._moved()  # refused, never delivered
            raise

    async def publish(self, room: str, message: PreparedMessage) -> None:
        """Publish to every hub with members in ``room`` (this one included). Raises
        ``ConnectionError`` when it is never delivered (at once while the room's Redis is not
        ready), ``TimeoutError`` when it may be: see :func:`run_command`."""
        channel, data = self._channel(room), encode_message(message)
        if self._sharded:
            await self._command(room, lambda client: client.spublish(channel, data))
        else:
            await self._command(room, lambda client: client.publish(channel, data))

    async def append(
        self, room: str, message: PreparedMessage, *, is_json: bool, size: int, ttl: float
    ) -> StreamPosition:
        """Publish to ``room`` and keep the message in its history, in one step (see
        :class:`HistoryBackend`); raises as :meth:`publish` does."""
        history, channel = self._history, self._channel(room)
        return await self._command(
            room,
            lambda client: history.append(
                client, room, channel, message, is_json=is_json, size=size, ttl=ttl
            ),
        )

    async def read(self, room: str, *, since: StreamPosition | None, limit: int, ttl: float) -> HistoryPage:
        """Read ``room``'s history (see :class:`HistoryBackend`); raises as :meth:`publish` does."""
        history = self._history
        return await self._command(
            room, lambda client: history.read(client, room, since=since, limit=limit, ttl=ttl)
        )

    # ------------------------------------------------------------ presence

    async def presence_update(
        self, room: str, add: Mapping[str, str], remove: Collection[str]
    ) -> list[tuple[str, str]]:
        """Write and delete this process's entries of ``room``; return those that expired."""
        return await self._presence.update(self._route(room)[0], room, add, remove)

    async def presence_entries(self, room: str) -> list[tuple[str, str]]:
        """``room``'s entries that have not expired (client id, entry)."""
        return await self._presence.entries(self._route(room)[0], room)

    async def presence_count(self, room: str) -> int:
        """How many entries ``room`` has that have not expired."""
        return await self._presence.count(self._route(room)[0], room)
