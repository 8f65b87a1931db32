"""trio_ws: a trio-native, structured-concurrency WebSocket server and client (RFC 6455)."""

import logging

from ._cli import main as run_cli
from .app import (
    APIKey,
    AuthBackend,
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
    Metrics,
    Overflow,
    RateLimit,
    RedisBackend,
    Route,
    Router,
    open_websocket_server,
    origin_allowed,
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
    State,
    WebSocket,
    WebSocketClose,
    WebSocketDisconnect,
    WebSocketOptions,
    WebSocketState,
)
from .protocol import CloseCode, DeflateOptions, Headers
from .server import (
    ConnectionSummary,
    Handler,
    ProcessRequest,
    ProcessResponse,
    ServerObserver,
    WebSocketServer,
)

__version__ = "0.1.0.dev0"

# A library prints nothing unless the application configures logging (the CLI does).
logging.getLogger("trio_ws").addHandler(logging.NullHandler())

__all__ = [
    "APIKey",
    "AuthBackend",
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
    "Metrics",
    "RateLimit",
    "origin_allowed",
    "CloseCode",
    "ConnectionClosed",
    "ConnectionSummary",
    "DeflateOptions",
    "HTTPResponse",
    "Handler",
    "HandshakeRejected",
    "Headers",
    "ProcessRequest",
    "ProcessResponse",
    "QueryParams",
    "Request",
    "Route",
    "Router",
    "State",
    "URL",
    "WebSocket",
    "WebSocketClose",
    "WebSocketDisconnect",
    "WebSocketOptions",
    "ServerObserver",
    "WebSocketServer",
    "WebSocketState",
    "open_websocket",
    "open_websocket_server",
    "open_websocket_url",
    "run_cli",
    "serve_websocket",
]
