"""The Redis backend of the broadcast hub, through coredis (the optional extra ``trio-ws[redis]``;
coredis runs on trio through anyio)."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

import trio

from ..protocol import PreparedMessage

if TYPE_CHECKING:
    from ._broadcast import Hub

if sys.version_info < (3, 11):  # pragma: no cover - trio depends on the backport there
    from exceptiongroup import BaseExceptionGroup

__all__ = ["RedisBackend"]

logger = logging.getLogger("trio_ws.broadcast")


class RedisBackend:
    """Rooms across processes and machines through Redis pub/sub.

    Every hub subscribes to the pattern ``<prefix>*`` and keeps the messages of rooms it has members
    in; a message is published to ``<prefix><room>`` with one byte for its type. When Redis goes
    away, the listener reconnects (backing off up to ``max_delay`` seconds) and subscribes again;
    messages published meanwhile are lost: delivery is at most once. ``ready`` is set while the
    listener is subscribed. A publication that Redis does not take within ``publish_timeout``
    raises (and the hub counts it in ``publish_errors``).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "trio_ws:",
        publish_timeout: float = 1.0,
        max_delay: float = 2.0,
    ) -> None:
        try:
            import coredis
        except ImportError:  # pragma: no cover - the test extra installs it
            raise ImportError("RedisBackend needs coredis: pip install 'trio-ws[redis]'") from None
        self._coredis = coredis
        self.url = url
        self.prefix = prefix
        self.publish_timeout = publish_timeout
        self.max_delay = max_delay
        #: Set while the listener is subscribed.
        self.ready = trio.Event()
        self._client: Any = None

    async def run(self, hub: Hub, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen for the hub's life: connect, subscribe, deliver; on any failure, start again."""
        task_status.started()
        delay = 0.1
        prefix = self.prefix.encode()
        while True:
            try:
                # Reconnecting is ours (a fresh client each time), not coredis's: its own retry left
                # a pubsub unsubscribed after a Redis restart, in one of two processes, here.
                no_retry = self._coredis.retry.NoRetryPolicy()
                client = self._coredis.Redis.from_url(self.url, retry_policy=no_retry)
                async with client:
                    self._client = client
                    pubsub_manager = client.pubsub(
                        patterns=[self.prefix + "*"], ignore_subscribe_messages=True, retry_policy=no_retry
                    )
                    async with pubsub_manager as pubsub:
                        self.ready.set()
                        delay = 0.1
                        while True:
                            message = await pubsub.get_message(timeout=1.0)
                            if message is None or message["type"] != "pmessage":
                                continue
                            channel = bytes(message["channel"])  # type: ignore[arg-type]
                            data = bytes(message["data"])  # type: ignore[arg-type]
                            room = channel[len(prefix) :].decode("utf-8", "replace")
                            payload = data[1:].decode("utf-8") if data[:1] == b"t" else data[1:]
                            hub.deliver_local(room, PreparedMessage(payload), remote=True)
            except BaseException as exc:
                # coredis's own tasks can fail with ConnectionError next to our Cancelled (a hub
                # closing while Redis is away): the cancellation goes on, the rest is dropped.
                cancelled = _cancelled(exc)
                if cancelled is not None:
                    raise cancelled from None
                if not isinstance(exc, Exception):
                    raise
                logger.warning("Redis listener: %s; reconnecting in %.1f s", _first_leaf(exc), delay)
            self._client = None
            if self.ready.is_set():
                self.ready = trio.Event()
            await trio.sleep(delay)
            delay = min(delay * 2, self.max_delay)

    async def publish(self, room: str, message: PreparedMessage) -> None:
        """Publish to every hub (this one included)."""
        client = self._client
        if client is None:
            await trio.lowlevel.checkpoint()
            raise ConnectionError("not connected to Redis")
        data = (b"t" if message.is_text else b"b") + message.payload
        with trio.fail_after(self.publish_timeout):
            await client.publish(self.prefix + room, data)


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
