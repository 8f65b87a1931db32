"""The client layer: connecting (TCP, TLS), the client's opening handshake, running a client
connection."""

from ._connect import ClientHandshake, connect_websocket, open_websocket, open_websocket_url, run_client

__all__ = ["ClientHandshake", "connect_websocket", "open_websocket", "open_websocket_url", "run_client"]
