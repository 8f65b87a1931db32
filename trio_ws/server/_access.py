"""The access log: one line per connection on ``trio_ws.access`` (INFO), its fields also on the
log record (``extra``); and the end of a connection told to the server's observer."""

from __future__ import annotations

import logging

import trio

from ..connection import Request, WebSocket
from ._observer import ConnectionSummary, ServerObserver

__all__ = ["AccessRecord", "peer_address"]

access_logger = logging.getLogger("trio_ws.access")


def peer_address(stream: trio.abc.Stream) -> tuple[str, int] | None:
    """The ``(host, port)`` of the peer of a socket stream (or TLS over one); ``None`` otherwise."""
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        try:
            address = stream.socket.getpeername()
        except OSError:
            return None
        if not isinstance(address, tuple):  # a Unix socket's peer: a path, often empty
            return None
        return (str(address[0]), int(address[1]))
    return None


class AccessRecord:
    """What the access log says of one connection, filled in as it goes; also the server's note of
    where the connection stands (``handler_done``, ``failed``)."""

    __slots__ = ("client", "failed", "handler_done", "host", "quiet", "request", "start", "status", "ws")

    def __init__(self, start: float, client: tuple[str, int] | None) -> None:
        self.start = start
        self.client = client
        self.request: Request | None = None
        self.status = "-"  # the HTTP status answered, "-" when dropped without an answer
        self.ws: WebSocket | None = None
        self.host = "-"  # the key of max_connections_per_client, once admitted
        self.handler_done = False
        self.failed = False  # the handler raised
        self.quiet = False  # plain HTTP requests, each logged as it was answered: no line of its own

    def summary(self, include_query: bool = False) -> ConnectionSummary:
        """The connection as values (see :class:`~trio_ws.ConnectionSummary`)."""
        request, ws = self.request, self.ws
        client = request.client if request is not None else self.client
        where = f"{client[0]}:{client[1]}" if client else None
        path = query = None
        if request is not None:
            path, _, rest = request.target.partition("?")
            query = rest if include_query else None
        duration = trio.current_time() - self.start
        if ws is not None and ws.refused_status is not None:
            return ConnectionSummary(where, path, query, ws.refused_status, None, duration)
        if ws is None:
            status = None if self.status == "-" else int(self.status)
            return ConnectionSummary(where, path, query, status, None, duration)
        return ConnectionSummary(
            where,
            path,
            query,
            101,
            ws.close_code,
            duration,
            ws.messages_received,
            ws.bytes_received,
            ws.messages_sent,
            ws.bytes_sent,
        )

    def finish(self, observer: ServerObserver | None, include_query: bool) -> None:
        """The connection is over: the access line, and what ``observer`` is told of its end."""
        logging_on = access_logger.isEnabledFor(logging.INFO)
        if (observer is None and not logging_on) or self.quiet:
            return
        summary = self.summary(include_query)
        if observer is not None:
            if self.failed:
                observer.handler_failed()
            if self.status == "101":  # accepted (set when it was: see WebSocketServer.opened)
                observer.connection_closed(summary)
            elif summary.status is not None and summary.status != 101:
                observer.handshake_answered(summary.status)
        if logging_on:
            log_access(summary)


def log_access(summary: ConnectionSummary) -> None:
    """One line on ``trio_ws.access`` (INFO): client, path (and query if kept), outcome, duration,
    traffic; every field of ``summary`` is also an attribute of the log record."""
    where = summary.client or "-"
    target = summary.path or "-"
    if summary.query:
        target = f"{target}?{summary.query}"
    status, code = summary.status, summary.close_code
    if status is None:
        outcome = "-"
    elif status == 101 and code is not None:
        outcome = f"101 close={code}"
    else:
        outcome = str(status)
    traffic = ""
    if status == 101:
        traffic = (
            f" in={summary.messages_received}/{summary.bytes_received}B"
            f" out={summary.messages_sent}/{summary.bytes_sent}B"
        )
    extra = {
        "client": summary.client,
        "path": summary.path,
        "status": status,
        "close_code": code,
        "duration": summary.duration,
        "messages_received": summary.messages_received,
        "bytes_received": summary.bytes_received,
        "messages_sent": summary.messages_sent,
        "bytes_sent": summary.bytes_sent,
    }
    if summary.query is not None:
        extra["query"] = summary.query
    access_logger.info("%s %s %s %.3fs%s", where, target, outcome, summary.duration, traffic, extra=extra)
