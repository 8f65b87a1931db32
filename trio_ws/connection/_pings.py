"""Pings: the table of pings waiting for their pong, and the keepalive loop."""

from __future__ import annotations

import logging
import os
from typing import Protocol, final

import trio

from ..protocol import CloseCode
from ._exceptions import WebSocketDisconnect

__all__ = ["PingTable", "keepalive"]

logger = logging.getLogger("trio_ws")


@final
class PingTable:
    """The pings of one connection that wait for their pong, by payload.

    A pong answers its ping and every earlier one (RFC 6455 §5.5.3). An idle connection holds no
    dictionary here until its first ping.
    """

    __slots__ = ("_round_trips", "_waiting", "latency")

    def __init__(self) -> None:
        self._waiting: dict[bytes, tuple[float, trio.Event]] | None = None  # payload -> (sent at, answered)
        self._round_trips: dict[bytes, float] = {}  # payload -> seconds, until the ping's caller takes it
        #: Round-trip time of the last ping answered, in seconds.
        self.latency: float | None = None

    def new_payload(self) -> bytes:
        """A random payload that no waiting ping has."""
        payload = os.urandom(4)
        while self._waiting is not None and payload in self._waiting:
            payload = os.urandom(4)
        return payload

    def add(self, payload: bytes, now: float) -> trio.Event:
        """Record a ping about to be sent; the event is set by its pong or by :meth:`end`.
        ``ValueError`` if a ping with this payload is already waiting."""
        waiting = self._waiting
        if waiting is None:
            waiting = self._waiting = {}
        elif payload in waiting:
            raise ValueError("a ping with this payload is already waiting for its pong")
        event = trio.Event()
        waiting[payload] = (now, event)
        return event

    def forget(self, payload: bytes) -> None:
        """Drop a ping whose caller stopped waiting."""
        if self._waiting is not None:
            self._waiting.pop(payload, None)
        self._round_trips.pop(payload, None)

    def answered(self, payload: bytes, now: float) -> None:
        """A pong arrived: wake its ping and every earlier one."""
        waiting = self._waiting
        if waiting is None or payload not in waiting:
            return
        for key in list(waiting):
            sent_at, event = waiting.pop(key)
            self._round_trips[key] = now - sent_at
            event.set()
            if key == payload:
                self.latency = now - sent_at
                break

    def round_trip(self, payload: bytes) -> float | None:
        """The round trip of an answered ping (taken once), or ``None`` if it was not answered."""
        return self._round_trips.pop(payload, None)

    def end(self) -> None:
        """The connection is closed: wake every waiting ping (unanswered)."""
        waiting = self._waiting
        if waiting:
            for _, event in waiting.values():
                event.set()
            waiting.clear()


class _Pinging(Protocol):
    async def ping(self, payload: bytes | None = None) -> float: ...

    async def close(self, code: int = ..., reason: str = ...) -> None: ...


async def keepalive(ws: _Pinging, interval: float, pong_within: float | None) -> None:
    """Ping every ``interval`` seconds; no pong within ``pong_within`` seconds closes with 1011.
    Returns when the connection is closed."""
    while True:
        await trio.sleep(interval)
        try:
            with trio.move_on_after(pong_within or float("inf")) as scope:
                await ws.ping()
        except WebSocketDisconnect:
            return
        if scope.cancelled_caught:
            logger.info("keepalive ping timed out; closing with 1011")
            await ws.close(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
            return
