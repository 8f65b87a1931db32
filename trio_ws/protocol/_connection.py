"""The sans-I/O WebSocket connection (RFC 6455 §5-§7): bytes in, events out; sends return bytes.

No trio, no sockets, no clocks. Feed received bytes to :meth:`Connection.receive_data`, handle the
events it returns, then write :meth:`Connection.data_to_send` (pongs and close replies it queued).
"""

from __future__ import annotations

import codecs
import enum
import os
from typing import Final

from ._errors import LocalProtocolError, ProtocolError
from ._events import BytesMessage, CloseReceived, Event, Ping, Pong, TextMessage
from ._extensions import Extension
from ._frames import (
    CloseCode,
    Opcode,
    apply_mask,
    encode_close_payload,
    encode_frame,
    parse_close_payload,
)

__all__ = ["Connection", "ConnectionState", "PreparedMessage", "Role"]

_utf8_decoder = codecs.getincrementaldecoder("utf-8")

# Plain ints of the opcodes defined in ``_frames.Opcode``, for the hot path's comparisons.
_TEXT: Final = int(Opcode.TEXT)
_BINARY: Final = int(Opcode.BINARY)
_CLOSE: Final = int(Opcode.CLOSE)
_PING: Final = int(Opcode.PING)
_PONG: Final = int(Opcode.PONG)
#: A message may come in at most ``max_message_size // MIN_FRAME_BYTES`` frames (64 at the least):
#: a message of a million empty or one-byte fragments is refused (1009) like one that is too big.
MIN_FRAME_BYTES: Final = 16


class PreparedMessage:
    """A message encoded once for many connections (broadcast): its opcode, its payload and, made on
    first use, its unmasked, uncompressed frame, which every server connection without an extension
    can send as it is."""

    __slots__ = ("_frame", "opcode", "payload")

    def __init__(self, data: str | bytes) -> None:
        self.opcode = _TEXT if isinstance(data, str) else _BINARY
        self.payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        self._frame: bytes | None = None

    @property
    def frame(self) -> bytes:
        """The whole frame, as a server without an extension sends it."""
        if self._frame is None:
            self._frame = encode_frame(self.opcode, self.payload)
        return self._frame

    @property
    def is_text(self) -> bool:
        """Whether it is a text message."""
        return self.opcode == _TEXT


class Role(enum.Enum):
    """Which end of the connection this is (RFC 6455 §5.1: clients mask, servers do not)."""

    CLIENT = "client"  #: masks what it sends, refuses masked frames
    SERVER = "server"  #: requires masked frames, sends unmasked ones


class ConnectionState(enum.Enum):
    """Where the closing handshake stands (RFC 6455 §7)."""

    OPEN = "open"  #: messages flow both ways
    CLOSING = "closing"  #: this side sent its close frame and waits for the peer's
    FAILED = "failed"  #: the peer broke the protocol (§7.1.7): what it sends is discarded; this side
    #: may still answer the messages that came before, then sends its close frame and closes TCP
    CLOSED = "closed"  #: handshake complete, connection failed and its close frame sent, or the stream ended


_S = ConnectionState
# The only moves the state machine makes; anything else is a bug and raises.
_TRANSITIONS: Final[dict[tuple[ConnectionState, str], ConnectionState]] = {
    (_S.OPEN, "send_close"): _S.CLOSING,
    (_S.OPEN, "receive_close"): _S.CLOSED,  # the reply is queued at once
    (_S.CLOSING, "receive_close"): _S.CLOSED,
    (_S.OPEN, "fail"): _S.FAILED,
    (_S.CLOSING, "fail"): _S.FAILED,
    (_S.FAILED, "send_close"): _S.CLOSED,  # the close frame that fails it: no reply is awaited
    (_S.OPEN, "end_of_stream"): _S.CLOSED,
    (_S.CLOSING, "end_of_stream"): _S.CLOSED,
    (_S.FAILED, "end_of_stream"): _S.CLOSED,
    (_S.CLOSED, "end_of_stream"): _S.CLOSED,
}


class Connection:
    """One end of an established WebSocket connection.

    ``max_message_size`` bounds a received message (after decoding by an extension); a larger one
    fails the connection with 1009 before it is buffered whole. ``extension`` is the negotiated
    RSV1 extension, if any.

    A protocol violation by the peer never raises from :meth:`receive_data`: the events before it are
    returned, the state becomes ``FAILED``, the violation is recorded in :attr:`failure` (a
    :class:`ProtocolError` with the close code to use), and every byte after it is discarded (RFC 6455
    §7.1.7). The edge then fails the connection: ``send_close(failure.code, failure.reason)`` (after
    answering the messages that came before, if it likes) and closes the stream.

    When the state is ``CLOSED``, :attr:`may_close_transport` says whether this side closes the TCP
    connection now or first waits (bounded) for the peer to close it.
    """

    __slots__ = (
        "_buf",
        "_client",
        "_decoder",
        "_frame_fin",
        "_frame_left",
        "_frame_mask",
        "_frame_offset",
        "_msg_compressed",
        "_msg_frames",
        "_msg_opcode",
        "_msg_parts",
        "_msg_size",
        "_msg_wire",
        "_out",
        "_send_opcode",
        "bytes_received",
        "bytes_sent",
        "close_received",
        "close_sent",
        "end_of_stream",
        "extension",
        "failure",
        "max_message_size",
        "messages_received",
        "messages_sent",
        "role",
        "state",
    )

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
        #: The peer's protocol violation that failed the connection, if any.
        self.failure: ProtocolError | None = None
        #: Whether the stream ended (``receive_data(b"")``).
        self.end_of_stream = False
        self._client = role is Role.CLIENT
        self._out: list[bytes] = []
        self._buf = bytearray()
        # The data frame being received: payload bytes still to come (-1: none), its mask, FIN.
        self._frame_left = -1
        self._frame_mask: bytes | None = None
        self._frame_offset = 0
        self._frame_fin = False
        # The message being received.
        self._msg_opcode = 0  # 0: no message in progress
        self._msg_compressed = False
        self._msg_size = 0  # payload bytes so far (decompressed)
        self._msg_frames = 0  # its frames so far
        self._msg_wire = 0  # compressed bytes so far
        self._msg_parts: bytearray | None = None  # an unfinished binary message's payload so far
        self._decoder: codecs.IncrementalDecoder | None = None
        # The message being sent in fragments: 0, or its opcode.
        self._send_opcode = 0
        #: Traffic so far: whole data messages and their payload bytes (before compression), each way.
        self.messages_received = self.bytes_received = self.messages_sent = self.bytes_sent = 0

    # ------------------------------------------------------------------ state

    def _move(self, event: str) -> None:
        try:
            self.state = _TRANSITIONS[self.state, event]
        except KeyError:
            raise LocalProtocolError(f"cannot {event} in state {self.state.name}") from None

    @property
    def may_close_transport(self) -> bool:
        """Whether this side may close the TCP connection now (RFC 6455 §7.1.1): once the connection
        is ``CLOSED``, the server closes it at once; the client waits for the server to close it
        (the end of the stream) unless the connection failed."""
        if self.state is not ConnectionState.CLOSED:
            return False
        return not self._client or self.end_of_stream or self.failure is not None

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

    # ---------------------------------------------------------------- receive

    def receive_data(self, data: bytes | bytearray) -> list[Event]:
        """Feed bytes read from the stream, in any chunking; ``b""`` means the stream ended.

        Returns the events they complete. Next: handle them, then send :meth:`data_to_send`. If
        :attr:`failure` is set, fail the connection (see the class); if :attr:`state` is ``CLOSED``,
        the closing handshake is complete and the stream can be closed.
        """
        if not data:
            self.end_of_stream = True
            self._move("end_of_stream")
            return []
        if self.state is ConnectionState.CLOSED or self.state is ConnectionState.FAILED:
            return []  # after the close frame or a failure, everything is discarded
        buf = self._buf
        buf += data
        events: list[Event] = []
        try:
            pos = self._parse(buf, events)
        except ProtocolError as exc:
            self._fail(exc)
            return events
        if pos:
            del buf[:pos]
        return events

    def _fail(self, exc: ProtocolError) -> None:
        self.failure = exc
        self._move("fail")
        self._buf = bytearray()
        self._msg_parts = None

    def _parse(self, buf: bytearray, events: list[Event]) -> int:
        """Parse as many frames as ``buf`` holds; return how many bytes were used."""
        n = len(buf)
        pos = 0
        with memoryview(buf) as mv:
            while True:
                if self._frame_left < 0:
                    # A new frame header.
                    if n - pos < 2:
                        return pos
                    b0 = mv[pos]
                    b1 = mv[pos + 1]
                    opcode = b0 & 0x0F
                    fin = bool(b0 & 0x80)
                    rsv1 = bool(b0 & 0x40)
                    self._check_header(b0, b1, opcode, fin, rsv1)
                    length = b1 & 0x7F
                    hlen = 2
                    if length == 126:
                        hlen = 4
                        if n - pos < 4:
                            return pos
                        length = (mv[pos + 2] << 8) | mv[pos + 3]
                    elif length == 127:
                        hlen = 10
                        if n - pos < 10:
                            return pos
                        length = int.from_bytes(mv[pos + 2 : pos + 10], "big")
                        if length >> 63:
                            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "invalid frame length")
                    mask: bytes | None = None
                    if b1 & 0x80:
                        if n - pos < hlen + 4:
                            return pos
                        mask = bytes(mv[pos + hlen : pos + hlen + 4])
                        hlen += 4
                    if opcode >= _CLOSE:
                        if n - pos - hlen < length:
                            return pos  # wait for the whole control frame (at most 125 bytes)
                        start = pos + hlen
                        pos = start + length
                        payload = mv[start:pos]
                        self._control(
                            opcode,
                            apply_mask(payload, mask) if mask is not None else bytes(payload),
                            events,
                        )
                        if opcode == _CLOSE:
                            return n  # nothing after a close frame counts
                        continue
                    pos += hlen
                    self._start_data_frame(opcode, fin, rsv1, length)
                    self._frame_mask = mask
                # Payload of the data frame in progress: whatever of it has arrived.
                left = self._frame_left
                take = min(left, n - pos)
                if take == 0 and left > 0:
                    return pos
                chunk = mv[pos : pos + take]
                pos += take
                mask = self._frame_mask
                if mask is not None:
                    offset = self._frame_offset & 3
                    if offset:
                        mask = mask[offset:] + mask[:offset]
                    data = apply_mask(chunk, mask)
                else:
                    data = bytes(chunk)
                self._frame_offset += take
                left -= take
                if left:
                    self._frame_left = left
                    self._message_data(data, False, events)
                    return pos
                self._frame_left = -1
                self._message_data(data, self._frame_fin, events)

    def _check_header(self, b0: int, b1: int, opcode: int, fin: bool, rsv1: bool) -> None:
        if b0 & 0x30 or (rsv1 and (self.extension is None or opcode not in (_TEXT, _BINARY))):
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "reserved bit set without an extension")
        if bool(b1 & 0x80) is self._client:
            raise ProtocolError(
                CloseCode.PROTOCOL_ERROR,
                "masked frame from the server" if self._client else "unmasked frame from client",
            )
        if opcode >= _CLOSE:
            if opcode > _PONG:
                raise ProtocolError(CloseCode.PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")
            if not fin:
                raise ProtocolError(CloseCode.PROTOCOL_ERROR, "fragmented control frame")
            if b1 & 0x7F > 125:
                raise ProtocolError(CloseCode.PROTOCOL_ERROR, "control frame over 125 bytes")
        elif opcode > _BINARY:
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")

    def _start_data_frame(self, opcode: int, fin: bool, rsv1: bool, length: int) -> None:
        if opcode == 0:
            if not self._msg_opcode:
                raise ProtocolError(CloseCode.PROTOCOL_ERROR, "continuation frame outside a message")
        else:
            if self._msg_opcode:
                raise ProtocolError(CloseCode.PROTOCOL_ERROR, "new message inside a fragmented one")
            self._msg_opcode = opcode
            self._msg_compressed = rsv1
            self._msg_size = self._msg_frames = self._msg_wire = 0
        limit = self.max_message_size
        if limit is not None:
            if self._msg_compressed:
                # Deflate never grows data by more than a few bytes per block: more compressed
                # bytes than this can only decode to a message over the limit, or to nothing.
                self._msg_wire += length
                if self._msg_wire > limit + (limit >> 6) + 1024:
                    raise ProtocolError(CloseCode.MESSAGE_TOO_BIG, f"message over {limit} bytes")
            elif self._msg_size + length > limit:
                raise ProtocolError(CloseCode.MESSAGE_TOO_BIG, f"message over {limit} bytes")
            self._msg_frames += 1
            if self._msg_frames > max(limit // MIN_FRAME_BYTES, 64):
                raise ProtocolError(CloseCode.MESSAGE_TOO_BIG, "message in too many fragments")
        if not self._msg_compressed:
            self._msg_size += length
        self._frame_left = length
        self._frame_offset = 0
        self._frame_fin = fin

    def _message_data(self, data: bytes, final: bool, events: list[Event]) -> None:
        """Add a piece of the current message's payload; ``final`` ends the message."""
        if self._msg_compressed:
            assert self.extension is not None
            limit = self.max_message_size
            data = self.extension.decode(
                data, final=final, max_length=None if limit is None else limit - self._msg_size
            )
            self._msg_size += len(data)
        if self._msg_opcode == _TEXT:
            decoder = self._decoder
            if final and decoder is None:
                text = _decode_utf8(data)  # the whole message in one piece: the fast path
            else:
                # Fragments are checked as they come (an invalid one fails at once) and kept as
                # bytes in one buffer, decoded once at the end: no object per fragment.
                parts = self._msg_parts
                if decoder is None:
                    decoder = self._decoder = _utf8_decoder()
                    parts = self._msg_parts = bytearray()
                assert parts is not None
                try:
                    decoder.decode(data, final)
                except UnicodeDecodeError:
                    raise ProtocolError(
                        CloseCode.INVALID_FRAME_PAYLOAD_DATA, "invalid UTF-8 in a text message"
                    ) from None
                parts += data
                if not final:
                    return
                text = parts.decode("utf-8")
                self._msg_parts = None
                self._decoder = None
            events.append(TextMessage(text))
        else:
            parts = self._msg_parts
            if not final:
                if parts is None:
                    self._msg_parts = bytearray(data)
                else:
                    parts += data  # one buffer per message, not an object per fragment
                return
            if parts is not None:
                parts += data
                data = bytes(parts)
                self._msg_parts = None
            events.append(BytesMessage(data))
        self.messages_received += 1
        self.bytes_received += self._msg_size
        self._msg_opcode = 0

    def _control(self, opcode: int, payload: bytes, events: list[Event]) -> None:
        if opcode == _PING:
            if self.state is ConnectionState.OPEN:
                self._out.append(self._frame(_PONG, payload))
            events.append(Ping(payload))
        elif opcode == _PONG:
            events.append(Pong(payload))
        else:
            code, reason = parse_close_payload(payload)
            event = CloseReceived(code, reason)
            self.close_received = event
            if self.state is ConnectionState.OPEN:
                reply = None if code == CloseCode.NO_STATUS_RCVD else code
                self._out.append(self._frame(_CLOSE, encode_close_payload(reply)))
                self.close_sent = (reply, "")
            self._move("receive_close")
            events.append(event)

    # ------------------------------------------------------------------- send

    def _frame(self, opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
        return encode_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=os.urandom(4) if self._client else None)

    def _check_can_send(self) -> None:
        state = self.state
        if state is not ConnectionState.OPEN and state is not ConnectionState.FAILED:
            raise LocalProtocolError(f"cannot send: the connection is {state.value}")

    def send_text(self, text: str) -> bytes:
        """Return the frame(s) of one text message."""
        return self._send_message(_TEXT, text.encode("utf-8"))

    def send_bytes(self, data: bytes | bytearray | memoryview) -> bytes:
        """Return the frame(s) of one binary message."""
        return self._send_message(_BINARY, bytes(data))

    def _send_message(self, opcode: int, payload: bytes) -> bytes:
        self._check_can_send()
        if self._send_opcode:
            raise LocalProtocolError("a fragmented message is being sent")
        self.messages_sent += 1
        self.bytes_sent += len(payload)
        if self.extension is not None:
            payload, rsv1 = self.extension.encode(payload)
            return self._frame(opcode, payload, rsv1=rsv1)
        return self._frame(opcode, payload)

    def send_prepared(self, message: PreparedMessage) -> bytes:
        """Return the frame(s) of a message prepared once for many connections: a server without
        an extension sends the shared frame as it is; otherwise it is encoded for this connection."""
        if self.extension is None and not self._client:
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
        opcode = _TEXT if isinstance(data, str) else _BINARY
        if self._send_opcode:
            if opcode != self._send_opcode:
                raise LocalProtocolError("fragments of one message must all be str or all bytes")
            opcode = Opcode.CONTINUATION
        self._send_opcode = 0 if fin else (self._send_opcode or opcode)
        self.bytes_sent += len(payload)
        self.messages_sent += fin
        return self._frame(opcode, payload, fin=fin)

    def send_ping(self, payload: bytes = b"") -> bytes:
        """Return a ping frame (``payload`` at most 125 bytes)."""
        return self._send_control(_PING, payload)

    def send_pong(self, payload: bytes = b"") -> bytes:
        """Return an unsolicited pong frame (``payload`` at most 125 bytes)."""
        return self._send_control(_PONG, payload)

    def _send_control(self, opcode: int, payload: bytes) -> bytes:
        self._check_can_send()
        if len(payload) > 125:
            raise LocalProtocolError("control frame payload over 125 bytes")
        return self._frame(opcode, bytes(payload))

    def send_close(self, code: int | None = CloseCode.NORMAL_CLOSURE, reason: str = "") -> bytes:
        """Return the close frame that starts the closing handshake; then wait for the peer's close
        frame (a :class:`CloseReceived` event). ``code=None`` sends an empty close body."""
        payload = encode_close_payload(code, reason)
        self._check_can_send()
        self._move("send_close")
        self.close_sent = (code, reason)
        return self._frame(_CLOSE, payload)


def _decode_utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(CloseCode.INVALID_FRAME_PAYLOAD_DATA, "invalid UTF-8 in a text message") from None
