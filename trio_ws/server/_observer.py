"""What a server tells an observer (metrics) of its connections: :class:`ServerObserver` and the
:class:`ConnectionSummary` of one connection, which the access log carries too."""

from __future__ import annotations

from typing import Protocol

import attrs

__all__ = ["ConnectionSummary", "ServerObserver"]


@attrs.frozen
class ConnectionSummary:
    """One connection, once it is over: what the access log line says, as values.

    ``client``: ``"host:port"`` of the peer (the proxied client behind ``trusted_proxies``), ``None``
    when unknown. ``path``: the request's path as sent (percent-encoded), ``None`` when no request
    was read. ``query``: its query string (without ``?``; ``""`` when there is none), only when the
    server was asked to keep it (``access_log_query=True``), else ``None``: query strings carry
    tokens. ``status``: the HTTP status answered (101 when the
    connection was accepted), ``None`` when it was dropped without an answer. ``close_code``: the
    WebSocket close code of an accepted connection (``None`` otherwise). ``duration``: seconds from
    accepting the TCP connection to its end. The four counters are whole messages and their payload
    bytes, each way (0 unless accepted).
    """

    client: str | None
    path: str | None
    query: str | None
    status: int | None
    close_code: int | None
    duration: float
    messages_received: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    bytes_sent: int = 0


class ServerObserver(Protocol):
    """What a server reports to an observer, such as :class:`~trio_ws.Metrics` (pass it as
    ``observer=`` to :func:`~trio_ws.open_websocket_server`).

    Each call is made once per event, never per message, from the server's task: it must be quick
    and must not raise (an exception would end that connection's task). A server without an
    observer does none of this work.
    """

    def handshake_answered(self, status: int) -> None:
        """An opening handshake was answered with the HTTP ``status``: 101 when accepted (reported
        as it is accepted), otherwise the refusal (400, 403, 426, 429, 503...), reported as that
        connection ends."""

    def connection_opened(self) -> None:
        """A connection was accepted (its 101 is out): it is open until :meth:`connection_closed`."""

    def connection_closed(self, summary: ConnectionSummary) -> None:
        """An accepted connection is over (its handler returned, its stream is closed): its close
        code and its traffic, counted once, here."""

    def handler_failed(self) -> None:
        """A handler raised (logged on ``trio_ws``; the connection closed with 1011, or refused with
        500 before ``accept()``); reported as that connection ends."""
