"""The server's hook for plain HTTP: a connection whose first request is not a WebSocket upgrade is
handed, with the bytes read so far, to the server's :class:`HTTPHandler` (the ASGI server's HTTP/1.1
side), which serves its requests and hands back a later request that asks for an upgrade.

A server without one answers such requests with 426 and does none of this.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol, final

import trio

from ..connection import HTTPResponse, Registry, Request, WebSocket, WebSocketOptions
from ..protocol import RequestHead
from ._access import AccessRecord, access_logger, log_access
from ._observer import ConnectionSummary
from ._proxies import Network, apply_forwarded

__all__ = ["HTTPConnection", "HTTPHandler", "IdleConnections", "Upgrade"]

#: What an HTTP handler hands back: a request asking for a WebSocket upgrade, and the bytes that
#: came after it (the first frames of an eager client).
Upgrade = tuple[RequestHead, bytes]


class HTTPHandler(Protocol):
    """Serves the plain HTTP requests of a server's connections (the server's ``http_handler``)."""

    async def serve_http(self, connection: HTTPConnection) -> Upgrade | None:
        """Serve ``connection`` (its first request is in ``connection.data``; ``connection.request``
        is ``None`` when the server's own parser refused it: the handler's is the judge) until it is done
        (``None``: the server closes the stream), or until a request asks for a WebSocket
        upgrade: then return that request and the bytes after it, and the server goes on with
        the opening handshake as for a first request. Must not raise but for cancellation."""


@final
class IdleConnections:
    """The cancel scopes of HTTP connections waiting for their next request: a shutdown cancels
    them, so that idle keep-alive connections close at once."""

    __slots__ = ("registry", "scopes")

    def __init__(self, registry: Registry[WebSocket]) -> None:
        self.registry = registry
        self.scopes: set[trio.CancelScope] = set()

    @contextmanager
    def waiting(self) -> Iterator[trio.CancelScope]:
        """A cancel scope for waiting for a request, cancelled by a shutdown (at once if one began)."""
        scope = trio.CancelScope()
        if not self.registry.accepting:
            scope.cancel()
        self.scopes.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self.scopes.discard(scope)

    def wake(self) -> None:
        """A shutdown began: every connection waiting for a request stops waiting."""
        for scope in self.scopes:
            scope.cancel()


@final
class HTTPConnection:
    """A connection handed to the server's :class:`HTTPHandler`: the ``stream``, the bytes read
    from it so far (``data``: the first request's head and what followed), that ``request``
    (scheme, client and host as trusted proxies forwarded them; ``None`` when the server's parser
    refused the head, which the handler then judges itself), and the server's settings the
    handler keeps to: ``options`` (``open_timeout`` bounds each request's head, ``close_timeout``
    the end of a response at shutdown), ``max_request_size`` (a request head's limit),
    ``server_header`` and ``process_request`` (the hook that sees every request first); and the
    connection's ``nursery``, for tasks of the handler's own (they end with the connection)."""

    __slots__ = (
        "_idle",
        "_proxy_headers",
        "_record",
        "_root_path",
        "_scheme",
        "_trusted",
        "access_log_query",
        "data",
        "max_request_size",
        "nursery",
        "options",
        "process_request",
        "request",
        "server_header",
        "stream",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        data: bytes,
        request: Request | None,
        record: AccessRecord,
        idle: IdleConnections,
        nursery: trio.Nursery,
        *,
        scheme: str,
        root_path: str,
        options: WebSocketOptions,
        max_request_size: int,
        server_header: str | None,
        process_request: Callable[[Request], Awaitable[HTTPResponse | None]] | None,
        trusted_proxies: tuple[Network, ...],
        proxy_headers: str,
        access_log_query: bool,
    ) -> None:
        self.stream = stream
        self.nursery = nursery
        self.data = data
        self.request = request
        self.options = options
        self.max_request_size = max_request_size
        self.server_header = server_header
        self.process_request = process_request
        self.access_log_query = access_log_query
        self._record = record
        self._idle = idle
        self._trusted = trusted_proxies
        self._proxy_headers = proxy_headers
        self._scheme = scheme
        self._root_path = root_path

    @property
    def accepting(self) -> bool:
        """``False`` once the server is shutting down: finish the response in progress (with
        ``Connection: close``) and end the connection."""
        return self._idle.registry.accepting

    def waiting(self) -> AbstractContextManager[trio.CancelScope]:
        """``with connection.waiting() as scope:`` around waiting for the next request: a shutdown
        cancels ``scope`` (at once if one began), as does its ``deadline``, which is the
        caller's to set."""
        return self._idle.waiting()

    def request_for(self, head: RequestHead) -> Request:
        """A later request of this connection as a :class:`~trio_ws.Request`: the connection's
        scheme, peer and root path, then what trusted proxies say of it (each request may say
        otherwise)."""
        request = Request(head, scheme=self._scheme, client=self._record.client, root_path=self._root_path)
        if self._trusted:
            apply_forwarded(request, self._trusted, self._proxy_headers)
        return request

    def log(self, request: Request, status: int | None, start: float) -> None:
        """The access line of one answered request (``status`` ``None``: dropped unanswered),
        from ``start`` (``trio.current_time()`` when it began)."""
        if not access_logger.isEnabledFor(logging.INFO):
            return
        client = request.client
        path, _, query = request.target.partition("?")
        summary = ConnectionSummary(
            f"{client[0]}:{client[1]}" if client else None,
            path,
            query if self.access_log_query else None,
            status,
            None,
            trio.current_time() - start,
        )
        log_access(summary)
