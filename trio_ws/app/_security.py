"""Handshake defences: origin checks, rate limits, authentication and guards (in that order).
(Per-connection message limits are in ``trio_ws.connection``; the client address behind trusted
proxies is the server's, in ``trio_ws.server``.)

Server-wide settings are checked before the handler; a route's (or router's) settings when the router
matches it. A refusal is an HTTP status with a short body, never a traceback.
"""

from __future__ import annotations

import collections
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import attrs
import trio

from ..connection import HTTPResponse, Request
from ..server import Handler
from ._auth import AuthBackend, Guard, authenticate, check_guards

__all__ = ["RATE_LIMIT_MARK", "ROUTED_MARK", "RateLimit", "SecurityPolicy", "origin_allowed", "rate_limit"]

#: The attribute ``@rate_limit`` sets on a handler: its :class:`RateLimit`, for the router to take.
RATE_LIMIT_MARK = "__trio_ws_rate_limit__"
#: The attribute a router sets on a handler it routed (so that a late ``@rate_limit`` is refused).
ROUTED_MARK = "__trio_ws_routed__"

H = TypeVar("H", bound=Handler)

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
_ORIGIN = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>\*\.[^:/]+|[^:/]+|\[[0-9a-f:.]+\])(?::(?P<port>\d+))?/?"
)


def _normal(origin: str) -> tuple[str, str, int] | None:
    m = _ORIGIN.fullmatch(origin.strip().lower())
    if m is None:
        return None
    scheme = m["scheme"]
    port = int(m["port"]) if m["port"] else _DEFAULT_PORTS.get(scheme, 0)
    return scheme, m["host"], port


def origin_allowed(origin: str, allowed: Sequence[str]) -> bool:
    """Whether ``origin`` is one of ``allowed``: exact origins (scheme, host and port, compared
    case-insensitively, default ports implied), ``"*"`` for any, and patterns whose host starts with
    ``*.`` (``https://*.example.com`` matches ``https://a.example.com`` and ``https://a.b.example.com``,
    not ``https://example.com``). ``"null"`` (sandboxed pages) matches only ``"null"`` or ``"*"``."""
    if "*" in allowed:
        return True
    if origin == "null":
        return "null" in allowed
    got = _normal(origin)
    if got is None:
        return False
    for entry in allowed:
        want = _normal(entry)
        if want is None or want[0] != got[0] or want[2] != got[2]:
            continue
        host = want[1]
        if host.startswith("*."):
            if got[1].endswith(host[1:]) and len(got[1]) > len(host) - 1:
                return True
        elif host == got[1]:
            return True
    return False


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class RateLimit:
    """A token bucket per client address for connection attempts: ``rps`` tokens a second, at most
    ``burst`` (default: ``max(1, rps)``). Beyond it the handshake gets 429 with ``Retry-After``.

    Memory is bounded: at most ``max_clients`` buckets are kept, the least recently used dropped
    first (a dropped bucket starts full again)."""

    def __init__(self, rps: float, burst: int | None = None, *, max_clients: int = 100_000) -> None:
        if rps <= 0:
            raise ValueError("rps must be positive")
        self.rps = rps
        self.burst = max(1, math.ceil(rps)) if burst is None else burst
        if self.burst < 1:
            raise ValueError("burst must be at least 1")
        self.max_clients = max_clients
        self._buckets: collections.OrderedDict[str, _Bucket] = collections.OrderedDict()

    def hit(self, key: str, now: float) -> float:
        """Take a token for ``key``: 0.0 if there was one, else the seconds until there will be."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp) * self.rps)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rps

    def __repr__(self) -> str:
        return f"RateLimit(rps={self.rps}, burst={self.burst})"


def rate_limit(rps: float, burst: int | None = None, *, max_clients: int = 100_000) -> Callable[[H], H]:
    """Decorator: a :class:`RateLimit` for the handler's route, the same as the route's
    ``rate_limit=RateLimit(rps, burst, max_clients=max_clients)``: a token bucket per client
    address for handshakes (connection attempts), ``rps`` a second, at most ``burst``; beyond it the
    handshake gets 429 with ``Retry-After``. It goes below the route decorator::

        @router.websocket("/chat")
        @rate_limit(rps=10, burst=20)
        async def chat(ws: WebSocket) -> None: ...

    The handler is returned as it is, marked for the router (every route of this handler shares
    the one set of buckets). Raises ``ValueError`` for a bad ``rps`` or ``burst`` (at once),
    ``TypeError`` above the route decorator (the route was added before it ran) or twice on one
    handler; the router raises ``ValueError`` if the route also has ``rate_limit=``.
    """
    limit = RateLimit(rps, burst, max_clients=max_clients)

    def decorate(handler: H) -> H:
        name = getattr(handler, "__name__", repr(handler))
        if getattr(handler, ROUTED_MARK, False):
            raise TypeError(
                f"@rate_limit(...) must go below @router.websocket(...): {name} was routed before it"
                " ran (or give the route rate_limit=RateLimit(...))"
            )
        if getattr(handler, RATE_LIMIT_MARK, None) is not None:
            raise TypeError(f"{name} already has a @rate_limit")
        try:
            setattr(handler, RATE_LIMIT_MARK, limit)
        except (AttributeError, TypeError):
            raise TypeError(
                f"@rate_limit cannot mark {handler!r}; give the route rate_limit=RateLimit(...)"
            ) from None
        return handler

    return decorate


@attrs.frozen
class SecurityPolicy:
    """What a server, a router or a route checks before its handler runs, in this order: origin,
    rate limit, authentication, guards. ``None`` fields are not set (a route's set fields override
    its router's, and a router's its parent's)."""

    origins: tuple[str, ...] | None = None
    require_origin: bool | None = None
    rate_limit: RateLimit | None = None
    auth: tuple[AuthBackend, ...] | None = None
    guards: tuple[Guard, ...] | None = None

    @classmethod
    def build(
        cls,
        origins: Sequence[str] | None = None,
        require_origin: bool | None = None,
        rate_limit: RateLimit | None = None,
        auth: Sequence[AuthBackend] | None = None,
        guards: Sequence[Guard] | None = None,
    ) -> SecurityPolicy | None:
        """A policy from keyword arguments, or ``None`` when none is set."""
        if origins is not None and isinstance(origins, str):
            raise TypeError("origins is a list of origins, not a string")
        for backend in auth or ():
            if not callable(getattr(backend, "authenticate", None)):
                raise TypeError(f"{backend!r} is not an authentication backend (no authenticate method)")
        for guard in guards or ():
            if not callable(guard):
                raise TypeError(f"{guard!r} is not a guard (not callable)")
        policy = cls(
            None if origins is None else tuple(origins),
            require_origin,
            rate_limit,
            None if auth is None else tuple(auth),
            None if guards is None else tuple(guards),
        )
        if origins is None and not require_origin and rate_limit is None and not auth and not guards:
            return None  # nothing to check: the server skips the checks altogether
        return policy

    def over(self, base: SecurityPolicy | None) -> SecurityPolicy:
        """This policy's set fields over ``base``'s."""
        if base is None:
            return self
        return SecurityPolicy(
            *(
                mine if mine is not None else theirs
                for mine, theirs in zip(
                    attrs.astuple(self, recurse=False), attrs.astuple(base, recurse=False), strict=True
                )
            )
        )

    async def check(
        self, request: Request, principal: Any = None, backend: AuthBackend | None = None
    ) -> tuple[HTTPResponse | None, Any, AuthBackend | None]:
        """Run the checks: ``(refusal, None, None)`` or ``(None, principal, backend)``. Without
        ``auth`` of its own, the ``principal`` authenticated before (server-wide) is the one guarded."""
        origin = request.headers.get("origin")
        if origin is None:
            if self.require_origin:
                return HTTPResponse(403, "Origin not allowed"), None, None
        elif self.origins is not None and not origin_allowed(origin, self.origins):
            return HTTPResponse(403, "Origin not allowed"), None, None
        if self.rate_limit is not None:
            key = request.client[0] if request.client else "-"
            wait = self.rate_limit.hit(key, trio.current_time())
            if wait:
                retry = str(max(1, math.ceil(wait)))
                return HTTPResponse(429, "Rate limit exceeded", [("Retry-After", retry)]), None, None
        if self.auth is not None:
            principal, backend = await authenticate(self.auth, request)
        failed = await check_guards(self.guards or (), request, principal)
        if failed is not None:
            if principal is None:
                challenges = [c for b in self.auth or () if (c := getattr(b, "challenge", None))]
                headers = [("WWW-Authenticate", challenges[0])] if challenges else []
                body = "Authentication required"
                if request.auth_error is not None:
                    body = f"{body}: {request.auth_error}"
                return HTTPResponse(401, body, headers), None, None
            return HTTPResponse(403, "Permission denied"), None, None
        return None, principal, backend
