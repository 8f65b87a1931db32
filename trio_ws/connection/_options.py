"""The settings of a connection (:class:`WebSocketOptions`) and its states."""

from __future__ import annotations

import enum

import attrs

from ..protocol import DeflateOptions
from ._limits import MessageLimit

__all__ = ["WebSocketOptions", "WebSocketState"]


class WebSocketState(enum.Enum):
    """One side's state, as in Starlette: ``client_state`` and ``application_state``."""

    CONNECTING = 0  #: the opening handshake is under way
    CONNECTED = 1  #: accepted: messages flow
    DISCONNECTED = 2  #: this side closed (or refused) the connection, or it dropped


@attrs.frozen
class WebSocketOptions:
    """Per-connection settings, shared by the server and the client.

    - ``max_message_size``: largest received message in bytes (``None``: no limit); larger fails 1009.
    - ``max_queue``: received messages waiting for the handler before the reader stops reading.
    - ``queue_high_water`` / ``queue_low_water``: bytes waiting before the reader stops reading, and the
      level at which it starts again.
    - ``write_high_water`` / ``write_low_water``: bytes sent but not yet written to the stream beyond
      which a send waits, and the level that lets it go on. Below it, sends return at once and the
      connection's writer task writes many messages per system call.
    - ``ping_interval`` / ``ping_timeout``: keepalive pings (``None``: off); no pong within the timeout
      closes with 1011.
    - ``open_timeout``: TLS and opening handshake; ``close_timeout``: closing handshake.
    - ``compression``: permessage-deflate settings (:class:`DeflateOptions`), negotiated when the peer
      agrees; ``None`` turns compression off.
    - ``message_limit``: received messages per second and bytes per second (:class:`MessageLimit`);
      beyond them the connection is closed with 1008.
    """

    max_message_size: int | None = 2**20
    max_queue: int = 16
    queue_high_water: int = 2**20
    queue_low_water: int = 2**18
    write_high_water: int = 2**16
    write_low_water: int = 2**14
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    open_timeout: float = 10.0
    close_timeout: float = 10.0
    compression: DeflateOptions | None = attrs.field(factory=DeflateOptions)
    message_limit: MessageLimit | None = None
