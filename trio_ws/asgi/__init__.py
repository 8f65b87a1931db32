"""ASGI on trio_ws: :func:`serve_asgi` and :func:`open_asgi_server` serve an ASGI application
(Starlette, FastAPI...) — its WebSockets on the trio_ws server, its HTTP routes with h11 on the same
port, its lifespan. Needs h11: ``pip install 'trio-ws[asgi]'``. Imported as ``trio_ws.asgi``."""

from ._asgi_server import open_asgi_server, serve_asgi
from ._bridge import ASGIWebSocket
from ._h11 import H11Server
from ._lifespan import LifespanFailed
from ._types import ASGIApp, ClientDisconnected, Message, Receive, Scope, Send

__all__ = [
    "ASGIApp",
    "ASGIWebSocket",
    "ClientDisconnected",
    "H11Server",
    "LifespanFailed",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "open_asgi_server",
    "serve_asgi",
]
