"""One WebSocket connection over any ``trio.abc.Stream``: the public :class:`WebSocket` API, the
inbox (reader task and receive backpressure), the writer (the only path to the stream), the
request objects, options and states. Knows nothing of sockets, listeners, routing or policy.

The names below without a leading underscore are this layer's interface to the layers above
(server, client, application); the package ``trio_ws`` re-exports the public ones.
"""

from ._budget import BufferBudget
from ._exceptions import (
    ConnectionClosed,
    HandshakeRejected,
    WebSocketClose,
    WebSocketDisconnect,
    check_close,
    check_close_reason,
)
from ._io import receive_some
from ._iteration import ChunkIterator, JSONMode, MessageIterator
from ._limits import MessageLimit
from ._opening import Registry, ResponseHook, ServerHandshake
from ._options import WebSocketOptions, WebSocketState
from ._request import URL, HTTPResponse, QueryParams, Request
from ._scope import ASGI_VERSION, State, scope_address, socket_addresses, websocket_scope
from ._websocket import WebSocket, start_client
from ._writer import answer_and_linger

__all__ = [
    "ASGI_VERSION",
    "URL",
    "BufferBudget",
    "ChunkIterator",
    "ConnectionClosed",
    "HTTPResponse",
    "HandshakeRejected",
    "JSONMode",
    "MessageIterator",
    "MessageLimit",
    "QueryParams",
    "Registry",
    "Request",
    "ResponseHook",
    "ServerHandshake",
    "State",
    "WebSocket",
    "WebSocketClose",
    "WebSocketDisconnect",
    "WebSocketOptions",
    "WebSocketState",
    "answer_and_linger",
    "check_close",
    "check_close_reason",
    "receive_some",
    "scope_address",
    "socket_addresses",
    "start_client",
    "websocket_scope",
]
