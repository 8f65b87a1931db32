"""ASGI both ways, on top of the connection, server and application layers.

- :func:`serve_asgi` and :func:`open_asgi_server` serve an ASGI application (Starlette,
  FastAPI...): its WebSockets on the trio_ws server, its HTTP routes with h11 on the same port, its
  lifespan (h11 is needed then: ``pip install 'trio-ws[asgi]'``).
- :func:`as_asgi`: trio_ws handlers mounted in an ASGI server.

The modules: ``_asgi_server`` (serving), ``_bridge`` (the WebSocket events and their rules),
``_h11`` and ``_cycle`` (HTTP/1.1: a connection's requests, one request's events), ``_lifespan``,
``_asgi_types``; ``_mount``, ``_mount_request``, ``_mount_stream`` (mounting).
"""

from ._asgi_server import open_asgi_server, serve_asgi
from ._asgi_types import ASGIApp, ClientDisconnected, Message, Receive, Scope, Send
from ._lifespan import LifespanFailed
from ._mount import ASGIWebSocketApp, as_asgi

__all__ = [
    "ASGIApp",
    "ASGIWebSocketApp",
    "ClientDisconnected",
    "LifespanFailed",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "as_asgi",
    "open_asgi_server",
    "serve_asgi",
]
