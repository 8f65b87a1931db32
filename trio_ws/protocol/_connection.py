"""The sans-I/O WebSocket connection (RFC 6455 §5-§7): bytes in, events out; sends return bytes.

No trio, no sockets, no clocks. Feed received bytes to :meth:`Connection.receive_data`, handle the
events it returns, then write :meth:`Connection.data_to_send` (pongs and close replies it queued).
"""

from __future__ import annotations

import codecs
from typing import Final

from ._errors import ProtocolError
from ._events import BytesMessage, CloseReceived, Event, Ping, Pong, TextMessage
from ._extensions import Extension
from ._frames import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    CloseCode,
    apply_mask,
    check_frame_header,
    encode_close_payload,
    parse_close_payload,
)
from ._pieces import SMALL, Pieces
from ._sending import FrameSending
from ._state import TRANSITIONS, ConnectionState, Role, next_state

__all__ = ["Connection"]

_utf8_decoder = codecs.getincrementaldecoder("utf-8")

#: A message may come in at most ``max_message_size // MIN_FRAME_BYTES`` frames (64 at the least):
#: a message of a million empty or one-byte fragments is refused (1009) like one that is too big.
MIN_FRAME_BYTES: Final = 16


class Connection(FrameSending):
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
        "_bin_parts",
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
        "_parts_held",
        "bytes_received",
        "close_received",
        "end_of_stream",
        "extension",
        "failure",
        "max_message_size",
        "messages_received",
        "role",
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
        self._msg_parts: Pieces | None = None  # an unfinished text message so far
        # An unfinished binary message so far: its pieces, small ones merged into one bytearray.
        self._bin_parts: list[bytes | bytearray] | None = None
        self._parts_held = 0  # the length of the pieces of either kind
        self._decoder: codecs.IncrementalDecoder | None = None
        super().__init__(role)
        #: Traffic so far: whole data messages and their payload bytes (before compression), each way.
        self.messages_received = self.bytes_received = self.messages_sent = self.bytes_sent = 0

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
    def buffered_bytes(self) -> int:
        """About how much memory the message in progress holds: bytes received and not yet parsed,
        and the pieces of an unfinished message so far (after decompression)."""
        return len(self._buf) + self._parts_held

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
        self._msg_parts = self._bin_parts = None
        self._parts_held = 0

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
                    check_frame_header(b0, b1, self._client, self.extension is not None)
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
                    if opcode >= OP_CLOSE:
                        if n - pos - hlen < length:
                            return pos  # wait for the whole control frame (at most 125 bytes)
                        start = pos + hlen
                        pos = start + length
                        # (No local keeps a slice of mv: a frame kept alive by a traceback, such
                        # as one the garbage collector made in here, would pin the buffer.)
                        self._control(
                            opcode,
                            apply_mask(mv[start:pos], mask) if mask is not None else bytes(mv[start:pos]),
                            events,
                        )
                        if opcode == OP_CLOSE:
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
                mask = self._frame_mask
                if mask is not None:
                    offset = self._frame_offset & 3
                    if offset:
                        mask = mask[offset:] + mask[:offset]
                    data = apply_mask(mv[pos : pos + take], mask)
                else:
                    data = bytes(mv[pos : pos + take])
                pos += take
                self._frame_offset += take
                left -= take
                if left:
                    self._frame_left = left
                    self._message_data(data, False, events)
                    return pos
                self._frame_left = -1
                self._message_data(data, self._frame_fin, events)

    def _start_data_frame(self, opcode: int, fin: bool, rsv1: bool, length: int) -> None:
        limit = self.max_message_size
        if opcode == 0:
            if not self._msg_opcode:
                raise ProtocolError(CloseCode.PROTOCOL_ERROR, "continuation frame outside a message")
            self._msg_frames += 1
            if limit is not None and self._msg_frames > 64 and self._msg_frames > limit // MIN_FRAME_BYTES:
                raise ProtocolError(CloseCode.MESSAGE_TOO_BIG, "message in too many fragments")
        else:
            if self._msg_opcode:
                raise ProtocolError(CloseCode.PROTOCOL_ERROR, "new message inside a fragmented one")
            self._msg_opcode = opcode
            self._msg_compressed = rsv1
            self._msg_size = self._msg_wire = 0
            self._msg_frames = 1
        if limit is not None:
            if self._msg_compressed:
                # Deflate never grows data by more than a few bytes per block: more compressed
                # bytes than this can only decode to a message over the limit, or to nothing.
                self._msg_wire += length
                if self._msg_wire > limit + (limit >> 6) + 1024:
                    raise ProtocolError(CloseCode.MESSAGE_TOO_BIG, f"message over {limit} bytes")
            elif self._msg_size + length > limit:
                raise ProtocolError(CloseCode.MESSAGE_TOO_BIG, f"message over {limit} bytes")
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
        if self._msg_opcode == OP_TEXT:
            decoder = self._decoder
            if final and decoder is None:
                events.append(TextMessage(_decode_utf8(data)))  # one piece: the fast path
            else:
                if decoder is None:
                    decoder = self._decoder = _utf8_decoder()
                    self._msg_parts = Pieces("")
                try:  # checked as it comes: an invalid fragment fails at once
                    piece = decoder.decode(data, final)
                except UnicodeDecodeError:
                    raise ProtocolError(
                        CloseCode.INVALID_FRAME_PAYLOAD_DATA, "invalid UTF-8 in a text message"
                    ) from None
                parts = self._msg_parts
                assert parts is not None
                parts.add(piece)
                if not final:
                    self._parts_held += len(data)
                    return
                self._parts_held = 0
                events.append(TextMessage(parts.join()))
                self._msg_parts = None
                self._decoder = None
        else:
            pieces = self._bin_parts
            if not final:
                self._parts_held += len(data)
                if pieces is None:
                    self._bin_parts = [data]
                elif len(data) >= SMALL:
                    pieces.append(data)
                elif type(pieces[-1]) is bytearray:  # tiny fragments: one object for a run of them
                    pieces[-1] += data
                else:
                    pieces.append(bytearray(data))
                return
            if pieces is not None:
                pieces.append(data)
                data = b"".join(pieces)
                self._bin_parts = None
                self._parts_held = 0
            events.append(BytesMessage(data))
        self.messages_received += 1
        self.bytes_received += self._msg_size
        self._msg_opcode = 0

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


def _decode_utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(CloseCode.INVALID_FRAME_PAYLOAD_DATA, "invalid UTF-8 in a text message") from None
