"""ASGI on trio_ws: :func:`serve_asgi` and :func:`open_asgi_server` serve an ASGI application
(Starlette, FastAPI...) — its WebSockets on the trio_ws server, its HTTP routes with h11 on the same
port, its lifespan. Needs h11: ``pip install 'trio-ws[asgi]'``. Imported as ``trio_ws.asgi``.

The modules: ``_asgi_server`` (serving), ``_bridge`` (the WebSocket events and their rules),
``_h11`` and ``_cycle`` (HTTP/1.1: a connection's requests, one request's events), ``_lifespan``,
``_asgi_types``.
"""

from ._asgi_server import open_asgi_server, serve_asgi
from ._asgi_types import ASGIApp, ClientDisconnected, Message, Receive, Scope, Send
from ._lifespan import LifespanFailed

__all__ = [
    "ASGIApp",
    "ClientDisconnected",
    "LifespanFailed",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "open_asgi_server",
    "serve_asgi",
]
