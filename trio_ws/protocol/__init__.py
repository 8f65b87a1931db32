"""The sans-I/O WebSocket protocol: handshake, RFC 6455 framing, and the connection state machine.

Nothing here imports trio or touches sockets or clocks: bytes in, events out.
"""

from ._connection import Connection
from ._deflate import DeflateOptions, PerMessageDeflate, accept_deflate, deflate_offer, negotiate_deflate
from ._errors import HandshakeError, LocalProtocolError, ProtocolError
from ._events import BytesMessage, CloseReceived, Event, MessageChunk, Ping, Pong, TextMessage
from ._extensions import Extension
from ._frames import (
    SPEEDUPS,
    CloseCode,
    Opcode,
    PreparedMessage,
    apply_mask,
    encode_frame,
    is_wire_close_code,
)
from ._handshake import (
    ExtensionOffer,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
    accept_key,
    build_request,
    build_response,
    check_request_headers,
    error_response,
    parse_extensions,
    subprotocols,
    validate_request,
    validate_response,
)
from ._headers import Headers, check_header
from ._negotiation import choose_subprotocol
from ._state import ConnectionState, Role

__all__ = [
    "BytesMessage",
    "CloseCode",
    "CloseReceived",
    "Connection",
    "ConnectionState",
    "DeflateOptions",
    "Event",
    "Extension",
    "ExtensionOffer",
    "HandshakeError",
    "Headers",
    "LocalProtocolError",
    "MessageChunk",
    "Opcode",
    "PerMessageDeflate",
    "PreparedMessage",
    "Ping",
    "Pong",
    "ProtocolError",
    "RequestHead",
    "RequestParser",
    "ResponseHead",
    "ResponseParser",
    "Role",
    "TextMessage",
    "accept_deflate",
    "accept_key",
    "SPEEDUPS",
    "apply_mask",
    "build_request",
    "build_response",
    "check_header",
    "check_request_headers",
    "choose_subprotocol",
    "deflate_offer",
    "encode_frame",
    "error_response",
    "is_wire_close_code",
    "negotiate_deflate",
    "parse_extensions",
    "subprotocols",
    "validate_request",
    "validate_response",
]
