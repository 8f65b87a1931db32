"""The client layer: connecting (TCP, TLS, through a proxy), the client's opening handshake,
running a client connection, reconnecting."""

from ._connect import (
    USER_AGENT,
    ClientHandshake,
    connect_websocket,
    open_websocket,
    open_websocket_url,
    run_client,
)
from ._reconnect import RECONNECT_CODES, Backoff, Connector, Reconnecting, reconnecting
from ._tunnel import ProxyError, ProxyURL, open_tunnel

__all__ = [
    "RECONNECT_CODES",
    "USER_AGENT",
    "Backoff",
    "ClientHandshake",
    "Connector",
    "ProxyError",
    "ProxyURL",
    "Reconnecting",
    "connect_websocket",
    "open_tunnel",
    "open_websocket",
    "open_websocket_url",
    "reconnecting",
    "run_client",
]
