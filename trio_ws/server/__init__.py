"""The server layer: listeners, the opening handshake up to the handler, the registry of
connections, graceful shutdown, the access log, and the hook that hands plain HTTP connections to
an HTTP handler (the ASGI server's). It takes a handshake policy object and imports nothing of the
application layer."""

from ._handoff import HTTPConnection, HTTPHandler, Upgrade
from ._observer import ConnectionSummary, ServerObserver
from ._proxies import client_address, parse_networks
from ._server import WebSocketServer, handler_ending, open_listeners, run_server
from ._upgrade import Handler, HandshakePolicy, ProcessRequest, ProcessResponse, http_answer

__all__ = [
    "ConnectionSummary",
    "Handler",
    "HTTPConnection",
    "HTTPHandler",
    "HandshakePolicy",
    "ProcessRequest",
    "ServerObserver",
    "ProcessResponse",
    "Upgrade",
    "WebSocketServer",
    "client_address",
    "handler_ending",
    "http_answer",
    "open_listeners",
    "parse_networks",
    "run_server",
]
