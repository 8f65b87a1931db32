"""trio_ws: a trio-native, structured-concurrency WebSocket server and client (RFC 6455)."""

import logging

from ._cli import main as run_cli
from .app import (
    APIKey,
    AuthBackend,
    AuthenticationFailed,
    BearerToken,
    BroadcastBackend,
    Guard,
    HasPermission,
    HTTPBasic,
    Hub,
    HubStats,
    IsAdminUser,
    IsAuthenticated,
    JWTAuth,
    Overflow,
    RateLimit,
    RedisBackend,
    Route,
    Router,
    open_websocket_server,
    origin_allowed,
    rate_limit,
    serve_websocket,
)
from .client import open_websocket, open_websocket_url
from .connection import (
    URL,
    BufferBudget,
    ConnectionClosed,
    HandshakeRejected,
    HTTPResponse,
    MessageLimit,
    QueryParams,
    Request,
    WebSocket,
    WebSocketClose,
    WebSocketDisconnect,
    WebSocketOptions,
    WebSocketState,
)
from .protocol import CloseCode, DeflateOptions, Headers
from .server import Handler, ProcessRequest, WebSocketServer

__version__ = "0.1.0.dev0"

# A library prints nothing unless the application configures logging (the CLI does).
logging.getLogger("trio_ws").addHandler(logging.NullHandler())

__all__ = [
    "APIKey",
    "AuthBackend",
    "AuthenticationFailed",
    "BroadcastBackend",
    "BufferBudget",
    "Hub",
    "HubStats",
    "Overflow",
    "RedisBackend",
    "BearerToken",
    "Guard",
    "HTTPBasic",
    "HasPermission",
    "IsAdminUser",
    "IsAuthenticated",
    "JWTAuth",
    "MessageLimit",
    "RateLimit",
    "origin_allowed",
    "rate_limit",
    "CloseCode",
    "ConnectionClosed",
    "DeflateOptions",
    "HTTPResponse",
    "Handler",
    "HandshakeRejected",
    "Headers",
    "ProcessRequest",
    "QueryParams",
    "Request",
    "Route",
    "Router",
    "URL",
    "WebSocket",
    "WebSocketClose",
    "WebSocketDisconnect",
    "WebSocketOptions",
    "WebSocketServer",
    "WebSocketState",
    "open_websocket",
    "open_websocket_server",
    "open_websocket_url",
    "run_cli",
    "serve_websocket",
]
