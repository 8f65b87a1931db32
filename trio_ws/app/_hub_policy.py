"""The values of a hub: what happens when a member's queue is full (:class:`Overflow`), its
counters (:class:`HubStats`), and a room's policy."""

from __future__ import annotations

import enum
from typing import Any

import attrs

__all__ = ["HubStats", "Overflow", "RoomPolicy"]


class Overflow(enum.Enum):
    """What happens when a subscriber's outgoing queue is full."""

    DROP_OLDEST = "drop_oldest"  #: the oldest queued message is dropped for the new one
    DROP_NEWEST = "drop_newest"  #: the new message is dropped
    CLOSE = "close"  #: the connection is closed (``close_code``, 1013 by default)


@attrs.define
class HubStats:
    """Counters of a hub, since it was made."""

    published: int = 0  #: messages published here
    received: int = 0  #: messages of this process's rooms from the backend (our own echo included)
    delivered: int = 0  #: messages written to a connection
    dropped_oldest: int = 0  #: messages dropped by ``DROP_OLDEST``
    dropped_newest: int = 0  #: messages dropped by ``DROP_NEWEST``
    closed: int = 0  #: connections closed by ``CLOSE``
    publish_errors: int = 0  #: publications the backend did not take (timed out ones included)
    publish_timeouts: int = 0  #: of ``publish_errors``, those that timed out: they may still arrive
    recovered: int = 0  #: joins with a position (``since``) that were sent every message they missed
    not_recovered: int = 0  #: joins with a position the history could not cover (or not be read)
    replayed: int = 0  #: messages of history sent to joining members


@attrs.frozen
class RoomPolicy:
    """A room's policy: what happens when a member's queue is full, and the room's history."""

    queue_size: int
    overflow: Overflow
    close_code: int
    history_size: int = 0
    history_ttl: float = 0
    envelope: bool = False

    def changed(self, **changes: Any) -> RoomPolicy:
        """This policy, with the ``changes`` that are not ``None``."""
        if changes.get("overflow") is not None:
            changes["overflow"] = Overflow(changes["overflow"])
        return attrs.evolve(self, **{name: value for name, value in changes.items() if value is not None})
