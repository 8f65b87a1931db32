"""Per-connection limits on received messages: a :class:`MessageLimit` is a ``WebSocketOptions``
field; a :class:`MessageMeter` is its running state in one connection."""

from __future__ import annotations

import attrs

__all__ = ["MessageLimit", "MessageMeter"]


@attrs.frozen
class MessageLimit:
    """Per-connection limits on received messages (a ``WebSocketOptions`` field, ``message_limit``):
    ``messages_per_second`` and ``bytes_per_second``, each with a burst (default: one second's worth).
    Beyond them the connection is closed with 1008 (policy violation)."""

    messages_per_second: float | None = None
    bytes_per_second: float | None = None
    burst_messages: float | None = None
    burst_bytes: float | None = None


class MessageMeter:
    """The running state of a :class:`MessageLimit` for one connection."""

    def __init__(self, limit: MessageLimit, now: float) -> None:
        self.rates = (limit.messages_per_second, limit.bytes_per_second)
        self.bursts = (
            limit.burst_messages or max(1.0, limit.messages_per_second or 0.0),
            limit.burst_bytes or max(1.0, limit.bytes_per_second or 0.0),
        )
        self.tokens = list(self.bursts)
        self.stamp = now

    def take(self, size: int, now: float, messages: int = 1) -> bool:
        """Count ``messages`` (one message, or none for a chunk before its message's last) of
        ``size`` bytes; ``False`` when it is over a limit."""
        elapsed = now - self.stamp
        self.stamp = now
        ok = True
        for i, (rate, amount) in enumerate(zip(self.rates, (float(messages), float(size)), strict=True)):
            if rate is None:
                continue
            self.tokens[i] = min(self.bursts[i], self.tokens[i] + elapsed * rate) - amount
            ok = ok and self.tokens[i] >= 0
        return ok
