"""trio_ws: a trio-native, structured-concurrency WebSocket server and client (RFC 6455)."""

import logging

from ._auth import (
    APIKey,
    AuthBackend,
    BearerToken,
    Guard,
    HasPermission,
    HTTPBasic,
    IsAdminUser,
    IsAuthenticated,
    JWTAuth,
)
from ._broadcast import BroadcastBackend, Hub, HubStats, Overflow
from ._cli import main as run_cli
from ._client import open_websocket, open_websocket_url
from ._connection import WebSocket, WebSocketOptions, WebSocketState
from ._exceptions import ConnectionClosed, HandshakeRejected, WebSocketClose, WebSocketDisconnect
from ._limits import MessageLimit
from ._redis import RedisBackend
from ._request import URL, HTTPResponse, QueryParams, Request
from ._routing import Route, Router
from ._security import RateLimit, origin_allowed
from ._server import Handler, ProcessRequest, WebSocketServer, open_websocket_server, serve_websocket
from .protocol import CloseCode, DeflateOptions, Headers

__version__ = "0.1.0.dev0"

# A library prints nothing unless the application configures logging (the CLI does).
logging.getLogger("trio_ws").addHandler(logging.NullHandler())

__all__ = [
    "APIKey",
    "AuthBackend",
    "BroadcastBackend",
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
