"""Reconnecting: ``async with reconnecting(url) as connections: async for ws in connections``.

The connections' tasks run in the nursery of the ``async with`` (an async generator cannot hold
one across its ``yield``); the iterator hands out one connection at a time and closes it when the
loop body is done with it, then waits (exponential backoff with jitter) and connects again.
"""

from __future__ import annotations

import functools
import logging
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator
from contextlib import asynccontextmanager
from typing import Any, final

import attrs
import trio

from ..connection import HandshakeRejected, WebSocket, WebSocketOptions
from ._connect import ClientHandshake, open_handshake, parse_url, request_headers, run_client
from ._tunnel import ProxyError, ProxyURL

__all__ = ["RECONNECT_CODES", "Backoff", "Connector", "Reconnecting", "reconnecting"]

logger = logging.getLogger("trio_ws.client")

RECONNECT_CODES = frozenset({1001, 1006, 1011, 1012, 1013, 1014})
"""Close codes after which connecting again may help: 1001 (going away: a server shutting down or
restarting), 1006 (the connection dropped), 1011 (server error), 1012 (service restart), 1013 (try
again later), 1014 (bad gateway)."""

Connector = Callable[[], Awaitable[ClientHandshake]]
"""What :func:`reconnecting` may call for each attempt instead of connecting to a URL: a function
returning a :class:`~trio_ws.client.ClientHandshake` (e.g. by ``connect_websocket``)."""

_CLIENT_ARGS = ("ssl_context", "subprotocols", "headers", "origin", "user_agent", "proxy", "local_address")


@attrs.frozen
class Backoff:
    """The waits between connection attempts: ``initial_delay`` seconds first, then ``factor``
    times longer after each attempt, up to ``max_delay``. ``jitter`` shortens each wait by a random
    fraction up to it (0: exact waits; 1: anywhere between 0 and the wait), so clients that lost one
    server do not all come back at once. After a connection that stayed open ``reset_after``
    seconds or longer, the waits start again from ``initial_delay``.

    Raises ``ValueError`` for a negative delay, ``max_delay < initial_delay``, ``factor < 1`` or a
    ``jitter`` outside 0..1.
    """

    initial_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 60.0
    jitter: float = 0.5
    reset_after: float = 60.0

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.initial_delay <= self.max_delay:
            raise ValueError("Backoff needs 0 <= initial_delay <= max_delay")
        if self.factor < 1:
            raise ValueError("Backoff needs factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("Backoff needs 0 <= jitter <= 1")
        if self.reset_after < 0:
            raise ValueError("Backoff needs reset_after >= 0")

    def delays(self) -> Iterator[float]:
        """The waits before each attempt, without jitter: ``initial_delay``, then ``factor`` times
        the one before, then ``max_delay`` for ever."""
        delay = self.initial_delay
        while True:
            yield delay
            delay = min(self.max_delay, delay * self.factor)

    def jittered(self, delay: float) -> float:
        """``delay`` shortened by a random fraction of at most ``jitter``."""
        return delay * (1 - self.jitter * random.random())


def retryable(exc: Exception) -> bool:
    """Whether connecting again may help after ``exc`` was raised by an attempt to connect: a
    network error (``OSError``, the stream broken, ``trio.TooSlowError``) but not a TLS error, a
    connection closed before the server answered, a 5xx or 429 answer (from the server or an HTTP
    proxy)."""
    if isinstance(exc, HandshakeRejected):
        return exc.status == 429 or 500 <= exc.status < 600 or isinstance(exc.__cause__, EOFError)
    if isinstance(exc, ProxyError):
        return exc.status is not None and 500 <= exc.status < 600
    if isinstance(exc, ssl.SSLError):
        return isinstance(exc, ssl.SSLEOFError)  # the peer closed the connection during TLS
    return isinstance(exc, (OSError, trio.BrokenResourceError, trio.TooSlowError))


def _retry_after(exc: Exception | None) -> float | None:
    """The seconds of a refusal's ``Retry-After`` header (a number; a date is not read)."""
    if not isinstance(exc, HandshakeRejected) or exc.headers is None:
        return None
    try:
        return max(0.0, float(exc.headers.get("retry-after", "")))
    except ValueError:
        return None


@attrs.define(eq=False)
class _Held:
    """The connection the loop body has: its task waits on ``done`` to close it."""

    ws: WebSocket
    opened_at: float
    done: trio.Event = attrs.field(factory=trio.Event)


async def _hold(handshake: ClientHandshake, *, task_status: trio.TaskStatus[_Held]) -> None:
    async with run_client(handshake) as ws:
        held = _Held(ws, trio.current_time())
        task_status.started(held)
        await held.done.wait()


@final
class Reconnecting:
    """The connections of :func:`reconnecting`, one at a time: ``async for ws in connections``.

    Each step closes the connection the loop body had (1000, if it is still open), decides whether
    to go on, waits as :class:`Backoff` says and connects again (waiting again after each failed
    attempt that may succeed later). The iteration ends when the server closed the connection with
    a code not in ``reconnect_codes`` (1000, say), or after :meth:`aclose`.
    """

    def __init__(
        self,
        connect: Connector,
        nursery: trio.Nursery,
        backoff: Backoff,
        reconnect_codes: Collection[int] = RECONNECT_CODES,
    ) -> None:
        self._connect = connect
        self._nursery = nursery
        self._backoff = backoff
        self._codes = frozenset(reconnect_codes)
        self._delays = backoff.delays()
        self._held: _Held | None = None
        self._ended = False
        #: How many connections were opened.
        self.connections = 0
        #: How many attempts to connect failed (and were tried again).
        self.failures = 0
        #: The last wait, in seconds (``None`` before the first).
        self.last_delay: float | None = None

    def __aiter__(self) -> Reconnecting:
        return self

    async def __anext__(self) -> WebSocket:
        if self._ended:
            await trio.lowlevel.checkpoint()
            raise StopAsyncIteration
        if self._held is not None:
            if not await self._release():
                self._ended = True
                raise StopAsyncIteration
            await self._wait(None)
        while True:
            try:
                handshake = await self._connect()
            except Exception as exc:
                if not retryable(exc):
                    self._ended = True
                    raise
                self.failures += 1
                await self._wait(exc)
            else:
                break
        held: _Held = await self._nursery.start(_hold, handshake)
        self._held = held
        self.connections += 1
        return held.ws

    async def _release(self) -> bool:
        """Close the body's connection; return whether to connect again."""
        held = self._held
        assert held is not None
        self._held = None
        left_open = not held.ws.is_closed
        try:
            await held.ws.close()
        finally:
            held.done.set()
        if trio.current_time() - held.opened_at >= self._backoff.reset_after:
            self._delays = self._backoff.delays()
        return left_open or held.ws.close_code in self._codes

    async def _wait(self, exc: Exception | None) -> None:
        delay = self._backoff.jittered(next(self._delays))
        retry_after = _retry_after(exc)
        if retry_after is not None:
            delay = max(delay, retry_after)
        self.last_delay = delay
        if exc is None:
            logger.info("connection closed; connecting again in %.1f s", delay)
        else:
            logger.info("connecting failed (%s: %s); trying again in %.1f s", type(exc).__name__, exc, delay)
        await trio.sleep(delay)

    async def aclose(self) -> None:
        """Close the current connection (1000, bounded by ``close_timeout``) and end the iteration."""
        self._ended = True
        if self._held is not None:
            await self._release()
        else:
            await trio.lowlevel.checkpoint()


@asynccontextmanager
async def reconnecting(
    url: str | Connector,
    *,
    backoff: Backoff | None = None,
    reconnect_codes: Collection[int] = RECONNECT_CODES,
    **connect_args: Any,
) -> AsyncIterator[Reconnecting]:
    """Connect to ``url`` (``ws://`` or ``wss://``) again and again::

        async with reconnecting("wss://example.com/feed") as connections:
            async for ws in connections:
                async for text in ws.iter_text():  # ends on 1000 and 1001; raises on others
                    ...

    Each connection is handed to the loop body, and closed (1000, if still open) when the body is
    done with it. Then, unless the server had closed it with a code outside ``reconnect_codes``
    (:data:`RECONNECT_CODES`), the loop waits (``backoff``: a :class:`Backoff`, by default 1 s
    doubling up to 60 s, with jitter) and connects again. A failed attempt is tried again after a
    wait when it may succeed later: ``OSError`` (refused, unreachable, the proxy unreachable),
    :class:`trio.TooSlowError` (``open_timeout``), the connection closed before the answer, a 5xx
    or 429 refusal (waiting at least its ``Retry-After``).

    ``connect_args`` are those of :func:`open_websocket_url` (``ssl_context``, ``subprotocols``,
    ``headers``, ``origin``, ``user_agent``, ``proxy``, ``local_address`` and
    :class:`WebSocketOptions` fields). Instead of a URL, ``url`` may be a :data:`Connector`, called
    for each attempt (then ``connect_args`` must be empty).

    Error handling: a refusal that will not change — :class:`HandshakeRejected` with another status
    (403, 404 …), :class:`ProxyError` (407 …), :class:`ssl.SSLError` (a certificate that does not
    verify), ``ValueError`` (bad arguments) — is raised by the ``async for``. The loop body's
    exceptions propagate unchanged: a body that wants to go on after
    :class:`~trio_ws.ConnectionClosed` catches it (the loop then reconnects as above). Leaving the
    ``async with`` (``break``, an exception, cancellation) closes the current connection.

    Resource handling: the connections' tasks run in a nursery of the ``async with``.
    """
    if backoff is None:
        backoff = Backoff()
    connect: Connector
    if isinstance(url, str):
        connect = _url_connector(url, connect_args)
    elif connect_args:
        raise TypeError(f"with a connect function, no connection arguments: {sorted(connect_args)}")
    else:
        connect = url
    error: Exception | None = None
    async with trio.open_nursery() as nursery:
        connections = Reconnecting(connect, nursery, backoff, reconnect_codes)
        try:
            yield connections
        except Exception as exc:  # raised again, unchanged, once the nursery is done
            error = exc
        finally:
            await connections.aclose()
    if error is not None:
        raise error


def _url_connector(url: str, connect_args: dict[str, Any]) -> Connector:
    """The attempt to connect to ``url``; raises ``ValueError``/``TypeError`` for bad arguments now."""
    host, port, resource, secure = parse_url(url)
    client = {name: connect_args.pop(name) for name in _CLIENT_ARGS if name in connect_args}
    options = WebSocketOptions(**connect_args)
    request_headers(client.get("headers", ()), client.get("origin"), None)  # ValueError now, not later
    if client.get("proxy") is not None:
        ProxyURL.parse(client["proxy"])
    if secure and client.get("ssl_context") is None:
        client["ssl_context"] = ssl.create_default_context()
    elif not secure:
        client.pop("ssl_context", None)
    return functools.partial(open_handshake, host, port, resource, options, **client)
