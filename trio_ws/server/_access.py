"""The access log: one line per connection on ``trio_ws.access`` (INFO)."""

from __future__ import annotations

import logging

import trio

from ..connection import Request, WebSocket

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
        return (str(address[0]), int(address[1]))
    return None


class AccessRecord:
    """What the access log says of one connection, filled in as it goes; also the server's note of
    where the connection stands (``handler_done``)."""

    __slots__ = ("client", "handler_done", "host", "request", "start", "status", "ws")

    def __init__(self, start: float, client: tuple[str, int] | None) -> None:
        self.start = start
        self.client = client
        self.request: Request | None = None
        self.status = "-"  # the HTTP status answered, "-" when dropped without an answer
        self.ws: WebSocket | None = None
        self.host = "-"  # the key of max_connections_per_client, once admitted
        self.handler_done = False

    def log(self) -> None:
        """One line on ``trio_ws.access`` (INFO): client, path, outcome, duration, traffic."""
        if not access_logger.isEnabledFor(logging.INFO):
            return
        request, ws = self.request, self.ws
        client = request.client if request is not None else self.client
        where = f"{client[0]}:{client[1]}" if client else "-"
        path = request.target if request is not None else "-"
        if ws is not None and ws.refused_status is not None:
            outcome = str(ws.refused_status)
        elif ws is not None and ws.close_code is not None:
            outcome = f"101 close={ws.close_code}"
        elif ws is not None:
            outcome = "101"
        else:
            outcome = self.status
        traffic = ""
        if ws is not None and ws.refused_status is None:
            traffic = (
                f" in={ws.messages_received}/{ws.bytes_received}B out={ws.messages_sent}/{ws.bytes_sent}B"
            )
        duration = trio.current_time() - self.start
        access_logger.info("%s %s %s %.3fs%s", where, path, outcome, duration, traffic)
