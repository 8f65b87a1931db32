"""The application layer, on the public connection API: routing, the handshake defences (origins,
rate limits, authentication, guards), rooms and their backends, serving a handler with them, and
running a server from a script (:func:`run`)."""

from ._auth import (
    APIKey,
    AuthBackend,
    AuthenticationFailed,
    BearerToken,
    Guard,
    HasPermission,
    HTTPBasic,
    IsAdminUser,
    IsAuthenticated,
    JWTAuth,
)
from ._broadcast import BroadcastBackend, Hub, HubStats, Overflow
from ._history import HistoryBackend, HistoryPage, Publication, Recovery, StreamPosition, Subscription
from ._metrics import Metrics
from ._presence import Member, PresenceBackend, PresenceUnavailable
from ._redis import RedisBackend
from ._redis_cluster import RedisClusterBackend
from ._routing import Route, Router
from ._run import listen_error, run, server_urls, shutdown_signals
from ._security import RateLimit, SecurityPolicy, origin_allowed, rate_limit
from ._serving import open_websocket_server, serve_websocket

__all__ = [
    "APIKey",
    "AuthBackend",
    "AuthenticationFailed",
    "BearerToken",
    "BroadcastBackend",
    "Guard",
    "HistoryBackend",
    "HistoryPage",
    "HTTPBasic",
    "HasPermission",
    "Hub",
    "HubStats",
    "IsAdminUser",
    "IsAuthenticated",
    "JWTAuth",
    "Member",
    "Metrics",
    "Overflow",
    "PresenceBackend",
    "PresenceUnavailable",
    "Publication",
    "RateLimit",
    "Recovery",
    "RedisBackend",
    "RedisClusterBackend",
    "Route",
    "Router",
    "SecurityPolicy",
    "StreamPosition",
    "Subscription",
    "listen_error",
    "open_websocket_server",
    "serve_websocket",
    "origin_allowed",
    "rate_limit",
    "run",
    "server_urls",
    "shutdown_signals",
]
