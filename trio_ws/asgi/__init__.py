"""ASGI, on top of the connection and server layers: trio_ws handlers mounted in an ASGI server
(:func:`as_asgi`)."""

from ._mount import ASGIWebSocketApp, as_asgi

__all__ = ["ASGIWebSocketApp", "as_asgi"]
