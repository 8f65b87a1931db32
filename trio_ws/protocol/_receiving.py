"""The receiving half of the sans-I/O connection: frames in, events out.

:class:`FrameReceiving` is a base of :class:`~trio_ws.protocol.Connection`, which owns the state
machine and answers control frames (the hooks ``_move`` and ``_control``).
Here: the frame parser, its limits, and the data messages, which come whole (``TextMessage``,
``BytesMessage``: the fragments joined at the end) or, when asked with
:meth:`~FrameReceiving.stream_message`, as :class:`MessageChunk` events, one per frame. Either way
text is checked as it comes (an invalid sequence fails at once) and ``max_message_size`` bounds the
whole message.
"""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING, Final

from . import _frames
from ._errors import ProtocolError
from ._events import BytesMessage, Event, MessageChunk, TextMessage
from ._frames import OP_BINARY, OP_CLOSE, OP_TEXT, CloseCode, PayloadBuffer, apply_mask, check_frame_header
from ._pieces import SMALL, Pieces
from ._sending import FrameSending
from ._state import ConnectionState, Role

if TYPE_CHECKING:
    from ._speedups import PayloadBuffer as _PayloadBuffer

__all__ = ["MIN_FRAME_BYTES", "FrameReceiving"]

_utf8_decoder = codecs.getincrementaldecoder("utf-8")

#: A message may come in at most ``max_message_size // MIN_FRAME_BYTES`` frames (64 at the least):
#: a message of a million empty or one-byte fragments is refused (1009) like one that is too big.
MIN_FRAME_BYTES: Final = 16


class FrameReceiving(FrameSending):
    """Receiving frames and messages (see the module). A base of ``Connection`` on top of
    ``FrameSending``: classes with slots can only be stacked."""

    __slots__ = (
        "_bin_parts", "_buf", "_decoder", "_frame_fin", "_frame_left", "_frame_mask", "_frame_offset",
        "_gather", "_msg_compressed", "_msg_frames", "_msg_opcode", "_msg_parts", "_msg_size", "_msg_wire",
        "_parts_held", "_streaming", "bytes_received", "end_of_stream", "failure", "messages_received",
    )  # fmt: skip
    max_message_size: int | None
    _client: bool  # this side is the client

    def __init__(self, role: Role) -> None:
        super().__init__(role)
        #: The peer's protocol violation that failed the connection, if any.
        self.failure: ProtocolError | None = None
        #: Whether the stream ended (``receive_data(b"")``).
        self.end_of_stream = False
        self._buf = bytearray()  # received, not parsed yet (only the part of a header or a control frame)
        # The data frame being received: payload bytes still to come (-1: none), its mask, FIN.
        self._frame_left = -1
        self._frame_mask: bytes | None = None
        self._frame_offset = 0
        self._frame_fin = False
        # A large binary frame arriving in several reads, gathered into one bytes (C speedup).
        self._gather: _PayloadBuffer | None = None
        # The message being received.
        self._msg_opcode = 0  # 0: no message in progress
        self._msg_compressed = False
        self._msg_size = 0  # payload bytes so far (decompressed)
        self._msg_frames = 0  # its frames so far
        self._msg_wire = 0  # compressed bytes so far
        self._msg_parts: Pieces | None = None  # an unfinished text message (or its frame, streamed)
        # An unfinished binary message so far (or its frame): its pieces, small ones merged.
        self._bin_parts: list[bytes | bytearray] | None = None
        self._parts_held = 0  # the length of the pieces of either kind
        self._decoder: codecs.IncrementalDecoder | None = None
        self._streaming = False  # the message in progress (or the next one) comes in chunks
        #: Whole data messages received and their payload bytes (after decompression).
        self.messages_received = self.bytes_received = 0

    @property
    def buffered_bytes(self) -> int:
        """About how much memory the message in progress holds: bytes received and not yet parsed,
        and the pieces of an unfinished message so far (after decompression)."""
        gather = self._gather
        return len(self._buf) + self._parts_held + (0 if gather is None else gather.filled)

    # ------------------------------------------------- hooks of the connection

    def _move(self, event: str) -> None:
        """Make a move of the state machine (see ``_state.py``)."""
        raise NotImplementedError

    def _control(self, opcode: int, payload: bytes, events: list[Event]) -> None:
        """Handle a control frame: answer a ping, record the peer's close and answer it."""
        raise NotImplementedError

    # ---------------------------------------------------------------- frames

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Feed bytes read from the stream, in any chunking; ``b""`` means the stream ended. What
        ``data`` holds is used before this returns (a read buffer may be reused after).

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
        if buf:  # part of a header (or of a control frame) came before
            buf += data
            data = buf
        events: list[Event] = []
        try:
            pos = self._parse(data, events)
        except ProtocolError as exc:
            self._fail(exc)
            return events
        if data is buf:
            del buf[:pos]
        elif pos < len(data):
            # ``data`` (maybe a view of a read buffer its caller reuses) was parsed where it lies;
            # only what no frame took yet is kept: part of a header or of a control frame.
            self._buf = bytearray(data[pos:])
        return events

    def _fail(self, exc: ProtocolError) -> None:
        self.failure = exc
        self._move("fail")
        self._buf = bytearray()
        self._msg_parts = self._bin_parts = None
        self._gather = None
        self._parts_held = 0

    def _parse(self, buf: bytes | bytearray | memoryview, events: list[Event]) -> int:
        """Parse as many frames as ``buf`` holds; return how many bytes were used."""
        n = len(buf)
        pos = 0
        fast = _frames.parse_messages
        with memoryview(buf) as mv:
            while True:
                if self._frame_left < 0:
                    if fast is not None and not self._msg_opcode and not self._streaming:
                        # (C) the whole one-frame messages from here on, the common case
                        masked, limit = not self._client, self.max_message_size
                        pos, count, size = fast(mv, pos, masked, limit, events, TextMessage, BytesMessage)
                        if count:
                            self.messages_received += count
                            self.bytes_received += size
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
                gather = self._gather
                if (
                    gather is None
                    and take < left
                    and not self._frame_offset
                    and left >= SMALL
                    and self._msg_opcode == OP_BINARY
                    and not self._msg_compressed
                    and PayloadBuffer is not None
                ):
                    # A large binary frame that came in part: its payload is unmasked into one
                    # buffer as it arrives and handed over whole, without pieces to join.
                    gather = self._gather = PayloadBuffer(left)
                if gather is not None:
                    gather.add(mv[pos : pos + take], mask)
                elif mask is not None:
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
                    if gather is None:
                        self._message_data(data, False, events)
                    return pos
                self._frame_left = -1
                self._frame_mask = None  # (not kept while the connection waits)
                if gather is not None:
                    self._gather = None
                    data = gather.take()
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

    # -------------------------------------------------------------- messages

    def stream_message(self) -> str | bytes | None:
        """Deliver the message being received, or the next one if none is, in chunks: a
        :class:`MessageChunk` event at the end of each of its frames, the last one ``final``,
        instead of one ``TextMessage`` or ``BytesMessage`` at its end. The message after it is
        assembled again.

        Returns the part of it that has already arrived (deliver it before the chunks), or ``None``
        if none has. The same limits apply: ``max_message_size`` bounds the whole message, text is
        checked as it comes (1007), and a chunk never ends inside a character.
        """
        self._streaming = True
        so_far: str | bytes | None = None
        if self._msg_opcode == OP_TEXT:
            if self._msg_parts is not None and self._msg_parts.size:
                so_far = self._msg_parts.join()
        elif self._msg_opcode and self._bin_parts:
            so_far = b"".join(self._bin_parts)
        self._parts_held = 0
        # Pieces to fill and a decoder, whichever kind the message is: with them, the fast paths of
        # a message in one piece are not taken, so they need no check of their own.
        if self._decoder is None:
            self._decoder = _utf8_decoder()
        self._msg_parts = Pieces("")
        self._bin_parts = []
        return so_far

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
                    if self._streaming and self._frame_left < 0:
                        self._chunk(events)
                    return
                self._parts_held = 0
                self._msg_parts = None
                self._decoder = None
                if self._streaming:
                    self._end_stream(parts.join(), events)
                else:
                    events.append(TextMessage(parts.join()))
        else:
            pieces = self._bin_parts
            if not final:
                self._parts_held += len(data)
                if not pieces:
                    self._bin_parts = [data]
                elif len(data) >= SMALL:
                    pieces.append(data)
                elif type(pieces[-1]) is bytearray:  # tiny fragments: one object for a run of them
                    pieces[-1] += data
                else:
                    pieces.append(bytearray(data))
                if self._streaming and self._frame_left < 0:
                    self._chunk(events)
                return
            if pieces is None:
                events.append(BytesMessage(data))  # one piece: the fast path
            else:
                pieces.append(data)
                data = b"".join(pieces)
                self._bin_parts = None
                self._parts_held = 0
                if self._streaming:
                    self._end_stream(data, events)
                else:
                    events.append(BytesMessage(data))
        self.messages_received += 1
        self.bytes_received += self._msg_size
        self._msg_opcode = 0

    def _chunk(self, events: list[Event]) -> None:
        """A frame of a streamed message is complete: its payload is the next chunk."""
        if self._msg_opcode == OP_TEXT:
            assert self._msg_parts is not None
            events.append(MessageChunk(self._msg_parts.join(), False))
            self._msg_parts = Pieces("")
        else:
            pieces = self._bin_parts
            events.append(MessageChunk(b"".join(pieces) if pieces else b"", False))
            self._bin_parts = []
        self._parts_held = 0

    def _end_stream(self, data: str | bytes, events: list[Event]) -> None:
        events.append(MessageChunk(data, True))
        self._streaming = False
        self._decoder = self._msg_parts = self._bin_parts = None


def _decode_utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(CloseCode.INVALID_FRAME_PAYLOAD_DATA, "invalid UTF-8 in a text message") from None
