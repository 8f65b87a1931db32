"""The application layer, on the public connection API: routing, the handshake defences (origins,
rate limits, authentication, guards), rooms and their backends, and serving a handler with them."""

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
from ._metrics import Metrics
from ._redis import RedisBackend
from ._routing import Route, Router
from ._security import RateLimit, SecurityPolicy, origin_allowed, rate_limit
from ._serving import open_websocket_server, serve_websocket

__all__ = [
    "APIKey",
    "AuthBackend",
    "AuthenticationFailed",
    "BearerToken",
    "BroadcastBackend",
    "Guard",
    "HTTPBasic",
    "HasPermission",
    "Hub",
    "HubStats",
    "IsAdminUser",
    "IsAuthenticated",
    "JWTAuth",
    "Metrics",
    "Overflow",
    "RateLimit",
    "RedisBackend",
    "Route",
    "Router",
    "SecurityPolicy",
    "open_websocket_server",
    "serve_websocket",
    "origin_allowed",
    "rate_limit",
]
