"""The sans-I/O WebSocket connection (RFC 6455 §5-§7): bytes in, events out; sends return bytes.

No trio, no sockets, no clocks. Feed received bytes to :meth:`Connection.receive_data`, handle the
events it returns, then write :meth:`Connection.data_to_send` (pongs and close replies it queued).
"""

from __future__ import annotations

from ._events import CloseReceived, Event, Ping, Pong
from ._extensions import Extension
from ._frames import OP_CLOSE, OP_PING, OP_PONG, CloseCode, encode_close_payload, parse_close_payload
from ._receiving import FrameReceiving
from ._state import TRANSITIONS, ConnectionState, Role, next_state

__all__ = ["Connection"]


class Connection(FrameReceiving):
    """One end of an established WebSocket connection.

    ``max_message_size`` bounds a received message (after decoding by an extension); a larger one
    fails the connection with 1009 before it is buffered whole. ``extension`` is the negotiated
    RSV1 extension, if any. Received messages come whole (``TextMessage``, ``BytesMessage``), or in
    chunks after :meth:`stream_message`.

    A protocol violation by the peer never raises from :meth:`receive_data`: the events before it are
    returned, the state becomes ``FAILED``, the violation is recorded in :attr:`failure` (a
    :class:`ProtocolError` with the close code to use), and every byte after it is discarded (RFC 6455
    §7.1.7). The edge then fails the connection: ``send_close(failure.code, failure.reason)`` (after
    answering the messages that came before, if it likes) and closes the stream.

    When the state is ``CLOSED``, :attr:`may_close_transport` says whether this side closes the TCP
    connection now or first waits (bounded) for the peer to close it.

    Its halves are its bases: :class:`FrameSending` (``_sending.py``) and, on top of it,
    :class:`FrameReceiving` (``_receiving.py``: the frame parser and the messages); this class holds
    the state machine, answers control frames and says how the connection ended.
    """

    __slots__ = ("_client", "_out", "close_received", "extension", "max_message_size", "role")

    def __init__(
        self,
        role: Role,
        *,
        max_message_size: int | None = 2**20,
        extension: Extension | None = None,
    ) -> None:
        self.role = role
        self.max_message_size = max_message_size
        self.extension = extension
        self.state = ConnectionState.OPEN
        #: The peer's close frame, once it arrived.
        self.close_received: CloseReceived | None = None
        #: The ``(code, reason)`` of the close frame this side sent (code ``None``: empty body).
        self.close_sent: tuple[int | None, str] | None = None
        self._client = role is Role.CLIENT
        self._out: list[bytes] = []
        super().__init__(role)
        #: Traffic so far: whole data messages and their payload bytes (before compression), sent.
        self.messages_sent = self.bytes_sent = 0

    # ------------------------------------------------------------------ state

    def _move(self, event: str) -> None:
        state = TRANSITIONS.get((self.state, event))
        self.state = next_state(self.state, event) if state is None else state  # (next_state raises)

    @property
    def may_close_transport(self) -> bool:
        """Whether this side may close the TCP connection now (RFC 6455 §7.1.1): once the connection
        is ``CLOSED``, the server closes it at once; the client waits for the server to close it
        (the end of the stream) unless the connection failed."""
        if self.state is not ConnectionState.CLOSED:
            return False
        return not self._client or self.end_of_stream or self.failure is not None

    def close_status(self, *, transport_lost: bool = False) -> tuple[int, str]:
        """The ``(code, reason)`` that says how the connection ended: the failure's, the peer's
        close frame's, ours if the peer answered it, else 1006 (also when the transport was lost
        before the closing handshake was over: ``transport_lost``)."""
        if transport_lost:
            return CloseCode.ABNORMAL_CLOSURE, ""
        if self.failure is not None:
            return self.failure.code, self.failure.reason
        if self.close_received is not None:
            return self.close_received.code, self.close_received.reason
        if self.close_sent is not None and not self.end_of_stream:
            code, reason = self.close_sent
            return (code if code is not None else CloseCode.NO_STATUS_RCVD), reason
        return CloseCode.ABNORMAL_CLOSURE, ""

    @property
    def has_data_to_send(self) -> bool:
        """Whether :meth:`data_to_send` would return bytes (a pong or a close reply is queued)."""
        return bool(self._out)

    def data_to_send(self) -> bytes:
        """Return (and forget) the bytes this connection queued by itself: pongs and close replies."""
        if not self._out:
            return b""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def _control(self, opcode: int, payload: bytes, events: list[Event]) -> None:
        if opcode == OP_PING:
            if self.state is ConnectionState.OPEN:
                self._out.append(self.encode(OP_PONG, payload))
            events.append(Ping(payload))
        elif opcode == OP_PONG:
            events.append(Pong(payload))
        else:
            code, reason = parse_close_payload(payload)
            event = CloseReceived(code, reason)
            self.close_received = event
            if self.state is ConnectionState.OPEN:
                reply = None if code == CloseCode.NO_STATUS_RCVD else code
                self._out.append(self.encode(OP_CLOSE, encode_close_payload(reply)))
                self.close_sent = (reply, "")
            self._move("receive_close")
            events.append(event)
