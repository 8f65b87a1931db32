"""The sending half of the sans-I/O connection: each ``send_*`` returns the bytes to write.

:class:`FrameSending` is a base of :class:`~trio_ws.protocol.Connection`; it keeps the state of a
message being sent in fragments, and checks the connection's state before every frame.
"""

from __future__ import annotations

import os

from ._errors import LocalProtocolError
from ._extensions import Extension
from ._frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    CloseCode,
    Opcode,
    PreparedMessage,
    encode_close_payload,
    encode_frame,
    encode_frame_parts,
)
from ._state import ConnectionState, Role, next_state

__all__ = ["FrameSending"]


class FrameSending:
    """Sending frames (see the module)."""

    __slots__ = ("_masking", "_send_opcode", "bytes_sent", "close_sent", "messages_sent", "state")
    state: ConnectionState
    extension: Extension | None
    #: The ``(code, reason)`` of the close frame this side sent (code ``None``: empty body).
    close_sent: tuple[int | None, str] | None
    messages_sent: int
    bytes_sent: int

    def __init__(self, role: Role) -> None:
        self._masking = role is Role.CLIENT  # clients mask every frame (RFC 6455 §5.3)
        # The message being sent in fragments: 0, or its opcode.
        self._send_opcode = 0

    def encode(self, opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
        """One frame as this side sends it (masked on a client), whatever the state: the low-level
        call under ``send_*``."""
        mask = os.urandom(4) if self._masking else None
        return encode_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=mask)

    def _check_can_send(self) -> None:
        state = self.state
        if state is not ConnectionState.OPEN and state is not ConnectionState.FAILED:
            raise LocalProtocolError(f"cannot send: the connection is {state.value}")

    def send_text(self, text: str) -> bytes:
        """Return the frame(s) of one text message."""
        return self._send_message(OP_TEXT, text.encode("utf-8"))

    def send_bytes(self, data: bytes | bytearray | memoryview) -> bytes:
        """Return the frame(s) of one binary message."""
        return self._send_message(OP_BINARY, bytes(data))

    def _send_message(self, opcode: int, payload: bytes) -> bytes:
        self._check_can_send()
        if self._send_opcode:
            raise LocalProtocolError("a fragmented message is being sent")
        self.messages_sent += 1
        self.bytes_sent += len(payload)
        if self.extension is not None:
            payload, rsv1 = self.extension.encode(payload)
            return self.encode(opcode, payload, rsv1=rsv1)
        return self.encode(opcode, payload)

    def send_text_parts(self, text: str) -> tuple[bytes, bytes]:
        """:meth:`send_text` as two parts to write one after the other, with a gathered write
        (``writev``), so that a large payload is not copied after its header; a short message's
        frame is all in the first part (the second is then empty)."""
        return self._message_parts(OP_TEXT, text.encode("utf-8"))

    def send_bytes_parts(self, data: bytes | bytearray | memoryview) -> tuple[bytes, bytes]:
        """:meth:`send_bytes` as two parts (see :meth:`send_text_parts`)."""
        return self._message_parts(OP_BINARY, bytes(data))

    def _message_parts(self, opcode: int, payload: bytes) -> tuple[bytes, bytes]:
        self._check_can_send()
        if self._send_opcode:
            raise LocalProtocolError("a fragmented message is being sent")
        self.messages_sent += 1
        self.bytes_sent += len(payload)
        mask = os.urandom(4) if self._masking else None
        if self.extension is not None:
            payload, rsv1 = self.extension.encode(payload)
            return encode_frame_parts(opcode, payload, rsv1=rsv1, mask=mask)
        return encode_frame_parts(opcode, payload, mask=mask)

    def send_prepared(self, message: PreparedMessage) -> bytes:
        """Return the frame(s) of a message prepared once for many connections: a server without
        an extension sends the shared frame as it is; otherwise it is encoded for this connection."""
        if self.extension is None and not self._masking:
            self._check_can_send()
            if self._send_opcode:
                raise LocalProtocolError("a fragmented message is being sent")
            self.messages_sent += 1
            self.bytes_sent += len(message.payload)
            return message.frame
        return self._send_message(message.opcode, message.payload)

    def send_fragment(self, data: str | bytes, *, fin: bool) -> bytes:
        """Return one frame of a fragmented message; the first fragment's type (str: text, bytes:
        binary) sets the message's type, and ``fin=True`` ends it. Control frames may go in between."""
        self._check_can_send()
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        opcode = OP_TEXT if isinstance(data, str) else OP_BINARY
        if self._send_opcode:
            if opcode != self._send_opcode:
                raise LocalProtocolError("fragments of one message must all be str or all bytes")
            opcode = Opcode.CONTINUATION
        self._send_opcode = 0 if fin else (self._send_opcode or opcode)
        self.bytes_sent += len(payload)
        self.messages_sent += fin
        return self.encode(opcode, payload, fin=fin)

    def send_ping(self, payload: bytes = b"") -> bytes:
        """Return a ping frame (``payload`` at most 125 bytes)."""
        return self._send_control(OP_PING, payload)

    def send_pong(self, payload: bytes = b"") -> bytes:
        """Return an unsolicited pong frame (``payload`` at most 125 bytes)."""
        return self._send_control(OP_PONG, payload)

    def _send_control(self, opcode: int, payload: bytes) -> bytes:
        self._check_can_send()
        if len(payload) > 125:
            raise LocalProtocolError("control frame payload over 125 bytes")
        return self.encode(opcode, bytes(payload))

    def send_close(self, code: int | None = CloseCode.NORMAL_CLOSURE, reason: str = "") -> bytes:
        """Return the close frame that starts the closing handshake; then wait for the peer's close
        frame (a :class:`CloseReceived` event). ``code=None`` sends an empty close body."""
        payload = encode_close_payload(code, reason)
        self._check_can_send()
        self.state = next_state(self.state, "send_close")
        self.close_sent = (code, reason)
        return self.encode(OP_CLOSE, payload)
