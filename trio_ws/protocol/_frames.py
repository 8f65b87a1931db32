"""RFC 6455 §5: opcodes, close codes, masking and frame encoding."""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from ._errors import LocalProtocolError, ProtocolError

if TYPE_CHECKING:
    from ._speedups import PayloadBuffer as _PayloadBuffer

__all__ = [
    "CloseCode",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "Opcode",
    "PreparedMessage",
    "check_frame_header",
    "SPEEDUPS",
    "apply_mask",
    "encode_close_payload",
    "encode_frame",
    "encode_frame_parts",
    "parse_close_payload",
]


class Opcode(enum.IntEnum):
    """Frame opcodes (RFC 6455 §5.2, §11.8)."""

    CONTINUATION = 0x0  #: continues a fragmented message
    TEXT = 0x1  #: first frame of a UTF-8 text message
    BINARY = 0x2  #: first frame of a binary message
    CLOSE = 0x8  #: starts or answers the closing handshake
    PING = 0x9  #: asks the peer for a pong
    PONG = 0xA  #: answers a ping, or an unsolicited heartbeat


# Plain ints of the opcodes, for the hot path's comparisons (an IntEnum compares slower).
OP_CONTINUATION: Final = int(Opcode.CONTINUATION)
OP_TEXT: Final = int(Opcode.TEXT)
OP_BINARY: Final = int(Opcode.BINARY)
OP_CLOSE: Final = int(Opcode.CLOSE)
OP_PING: Final = int(Opcode.PING)
OP_PONG: Final = int(Opcode.PONG)


class CloseCode(enum.IntEnum):
    """Close status codes (RFC 6455 §7.4.1 and the IANA registry, §11.7). ``NORMAL`` and
    ``NO_STATUS_RECEIVED`` are other names of ``NORMAL_CLOSURE`` and ``NO_STATUS_RCVD`` (the same
    members)."""

    NORMAL_CLOSURE = 1000  #: the purpose of the connection was fulfilled
    GOING_AWAY = 1001  #: the server is shutting down or the browser left the page
    PROTOCOL_ERROR = 1002  #: the peer broke the protocol
    UNSUPPORTED_DATA = 1003  #: a message type the endpoint cannot accept
    RESERVED = 1004  #: reserved, never sent
    NO_STATUS_RCVD = 1005  #: a close frame came without a code; never sent
    ABNORMAL_CLOSURE = 1006  #: the connection dropped without a close frame; never sent
    INVALID_FRAME_PAYLOAD_DATA = 1007  #: a text message was not valid UTF-8 (or inconsistent data)
    POLICY_VIOLATION = 1008  #: a message broke the endpoint's policy
    MESSAGE_TOO_BIG = 1009  #: a message was larger than the endpoint accepts
    MANDATORY_EXTENSION = 1010  #: the client needed an extension the server did not negotiate
    INTERNAL_ERROR = 1011  #: the server hit an unexpected condition
    SERVICE_RESTART = 1012  #: the server is restarting
    TRY_AGAIN_LATER = 1013  #: the server is overloaded; try again later
    BAD_GATEWAY = 1014  #: a gateway got an invalid response upstream
    TLS_HANDSHAKE = 1015  #: the TLS handshake failed; never sent

    # Aliases (the same members under the names other libraries use).
    NORMAL = 1000  #: alias of ``NORMAL_CLOSURE``
    NO_STATUS_RECEIVED = 1005  #: alias of ``NO_STATUS_RCVD``


# Codes that may appear in a close frame on the wire (§7.4.1, §7.4.2; 1012-1014 from the IANA registry).
_WIRE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


def is_wire_close_code(code: int) -> bool:
    """Whether ``code`` may be sent in a close frame: registered codes, and 3000-4999 (§7.4.2)."""
    return code in _WIRE_CODES or 3000 <= code <= 4999


_pack_short = struct.Struct("!BBH").pack
_pack_long = struct.Struct("!BBQ").pack


# For each mask byte m, a table that XORs every byte with m (used by bytes.translate).
_XOR_TABLES = [bytes(b ^ m for b in range(256)) for m in range(256)]
_TRANSLATE_FROM = 512


def py_apply_mask(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR ``data`` with the repeated 4-byte ``mask`` (RFC 6455 §5.3); the operation is its own inverse.

    Pure Python (the fallback of :func:`apply_mask`). Small payloads use one big-integer XOR; from 512
    bytes on, ``bytes.translate`` over the four strided slices is faster (measured by
    ``bench/bench_protocol.py``).
    """
    n = len(data)
    if n == 0:
        return b""
    if n < _TRANSLATE_FROM:
        reps, rest = divmod(n, 4)
        key = mask * reps + mask[:rest]
        return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")
    buf = bytearray(data)
    for i in range(4):
        buf[i::4] = buf[i::4].translate(_XOR_TABLES[mask[i]])
    return bytes(buf)


apply_mask: Callable[[bytes | bytearray | memoryview, bytes], bytes]
try:
    from ._speedups import apply_mask
except ImportError:  # built without a C compiler
    apply_mask = py_apply_mask
    #: Whether the C speedup (unmasking) is in use.
    SPEEDUPS = False
else:
    SPEEDUPS = True

#: Gathers a large payload read in pieces into one ``bytes`` (C; ``None`` without the speedup, or
#: with one built before it had it: the pieces are then joined).
PayloadBuffer: type[_PayloadBuffer] | None
try:
    from ._speedups import PayloadBuffer
except ImportError:
    PayloadBuffer = None

#: Makes the whole one-frame messages at the start of a buffer into events (C; ``None`` without the
#: speedup: ``FrameReceiving`` parses each frame itself). See ``_speedups_parse.c``.
parse_messages: Callable[..., tuple[int, int, int]] | None
try:
    from ._speedups import parse_messages
except ImportError:
    parse_messages = None

#: A frame's payload from this size on is written after its header, not joined to it (a copy less).
JOIN_BELOW: Final = 4096


def encode_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: bytes | None = None,
) -> bytes:
    """Return one frame: header, then ``payload`` (masked with ``mask`` when given, as a client must)."""
    b0 = opcode | (0x80 if fin else 0) | (0x40 if rsv1 else 0)
    n = len(payload)
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        header = bytes((b0, mbit | n))
    elif n < 65536:
        header = _pack_short(b0, mbit | 126, n)
    else:
        header = _pack_long(b0, mbit | 127, n)
    if mask is None:
        return header + payload
    return header + mask + apply_mask(payload, mask)


def encode_frame_parts(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: bytes | None = None,
) -> tuple[bytes, bytes]:
    """:func:`encode_frame` in two parts to write one after the other (a gathered write, without
    joining them): the header and the payload; a payload shorter than :data:`JOIN_BELOW` comes
    joined to its header, and the second part is then empty."""
    b0 = opcode | (0x80 if fin else 0) | (0x40 if rsv1 else 0)
    n = len(payload)
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        header = bytes((b0, mbit | n))
    elif n < 65536:
        header = _pack_short(b0, mbit | 126, n)
    else:
        header = _pack_long(b0, mbit | 127, n)
    if mask is not None:
        header += mask
        payload = apply_mask(payload, mask)
    if n < JOIN_BELOW:
        return header + payload, b""
    return header, payload


def encode_close_payload(code: int | None, reason: str = "") -> bytes:
    """Return the body of a close frame. ``code=None`` gives an empty body (no code, no reason)."""
    if code is None:
        if reason:
            raise LocalProtocolError("a close reason needs a close code")
        return b""
    if not is_wire_close_code(code):
        raise LocalProtocolError(f"close code {code} may not be sent (RFC 6455 §7.4)")
    body = code.to_bytes(2, "big") + reason.encode("utf-8")
    if len(body) > 125:
        raise LocalProtocolError("close reason longer than 123 bytes of UTF-8")
    return body


def parse_close_payload(payload: bytes) -> tuple[int, str]:
    """Return ``(code, reason)`` of a received close frame; 1005 when the frame has no code.

    Raises :class:`ProtocolError` 1002 for a 1-byte body or a code not allowed on the wire, and 1007 for
    a reason that is not UTF-8 (§5.5.1, §7.4).
    """
    if not payload:
        return CloseCode.NO_STATUS_RCVD, ""
    if len(payload) == 1:
        raise ProtocolError(CloseCode.PROTOCOL_ERROR, "close frame with a 1-byte body")
    code = int.from_bytes(payload[:2], "big")
    if not is_wire_close_code(code):
        raise ProtocolError(CloseCode.PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(CloseCode.INVALID_FRAME_PAYLOAD_DATA, "close reason is not UTF-8") from None
    return code, reason


def check_frame_header(b0: int, b1: int, client: bool, extension: bool) -> None:
    """Check a frame header's first two bytes as received (RFC 6455 §5.2, §5.5): reserved bits,
    masking (``client``: this side is the client, so frames must not be masked), opcodes, control
    frames. ``extension``: an RSV1 extension was negotiated. Raises :class:`ProtocolError` (1002)."""
    opcode = b0 & 0x0F
    if b0 & 0x30 or (b0 & 0x40 and (not extension or opcode not in (OP_TEXT, OP_BINARY))):
        raise ProtocolError(CloseCode.PROTOCOL_ERROR, "reserved bit set without an extension")
    if bool(b1 & 0x80) is client:
        raise ProtocolError(
            CloseCode.PROTOCOL_ERROR,
            "masked frame from the server" if client else "unmasked frame from client",
        )
    if opcode >= OP_CLOSE:
        if opcode > OP_PONG:
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")
        if not b0 & 0x80:
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "fragmented control frame")
        if b1 & 0x7F > 125:
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "control frame over 125 bytes")
    elif opcode > OP_BINARY:
        raise ProtocolError(CloseCode.PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")


class PreparedMessage:
    """A message encoded once for many connections (broadcast): its opcode, its payload and, made on
    first use, its unmasked, uncompressed frame, which every server connection without an extension
    can send as it is."""

    __slots__ = ("_frame", "opcode", "payload")

    def __init__(self, data: str | bytes) -> None:
        self.opcode = OP_TEXT if isinstance(data, str) else OP_BINARY
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
        return self.opcode == OP_TEXT
