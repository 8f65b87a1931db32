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
    Overflow,
    RateLimit,
    RedisBackend,
    Route,
    Router,
    open_websocket_server,
    origin_allowed,
    serve_websocket,
)
from .client import Backoff, ProxyError, Reconnecting, open_websocket, open_websocket_url, reconnecting
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
    "BroadcastBackend",
    "Backoff",
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
    "CloseCode",
    "ConnectionClosed",
    "DeflateOptions",
    "HTTPResponse",
    "Handler",
    "HandshakeRejected",
    "Headers",
    "ProcessRequest",
    "ProxyError",
    "QueryParams",
    "Request",
    "Reconnecting",
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
    "reconnecting",
    "run_cli",
    "serve_websocket",
]
