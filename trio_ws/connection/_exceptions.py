"""Exceptions of the public API."""

from __future__ import annotations

from ..protocol import CloseCode, Headers, is_wire_close_code

__all__ = [
    "HandshakeRejected",
    "WebSocketClose",
    "WebSocketDisconnect",
    "ConnectionClosed",
    "check_close",
    "check_close_reason",
]


class WebSocketDisconnect(Exception):
    """The connection is closed (or closing): raised by receives once every message that arrived
    before the close has been delivered, and by sends after the close.

    ``code`` is the peer's close code, the code this side failed the connection with (1002, 1007,
    1009, 1011 …), or 1006 when the connection dropped with no close frame.
    """

    def __init__(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"WebSocket closed with code {self.code}" + (f": {self.reason}" if self.reason else "")


#: The name the ``websockets`` library and trio-websocket use; the same class.
ConnectionClosed = WebSocketDisconnect


def check_close_reason(reason: str) -> None:
    """Refuse a close reason with CR or LF (it may end up in logs and proxies' headers)."""
    if "\r" in reason or "\n" in reason:
        raise ValueError(f"a close reason must not contain CR or LF: {reason!r}")


def check_close(code: int, reason: str) -> None:
    """Refuse what a close frame may not carry (RFC 6455 §5.5.1, §7.4): a ``code`` other than
    1000-1003, 1007-1014 and 3000-4999 (1005, 1006 and 1015 only say what happened, they are never
    sent), a ``reason`` over 123 bytes of UTF-8, or one with CR or LF. Raises ``ValueError``."""
    if isinstance(code, bool) or not isinstance(code, int) or not is_wire_close_code(code):
        raise ValueError(
            f"close code {code!r} may not be sent: use 1000-1003, 1007-1014 or 3000-4999 (RFC 6455 §7.4)"
        )
    check_close_reason(reason)
    if len(reason.encode("utf-8")) > 123:
        raise ValueError(f"a close reason may have at most 123 bytes of UTF-8, not {len(reason.encode())}")


class WebSocketClose(Exception):
    """Raise it from a handler to close the connection with ``code`` and ``reason``; alone or in an
    ``ExceptionGroup`` of the handler's own tasks made only of ``WebSocketClose`` and
    :class:`WebSocketDisconnect` (then the first ``WebSocketClose`` in the group's order wins).

    ``ValueError`` for a code that may not be sent (only 1000-1003, 1007-1014 and 3000-4999 may),
    a reason over 123 bytes of UTF-8, or one with CR or LF."""

    def __init__(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        check_close(code, reason)
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


class HandshakeRejected(Exception):
    """The server refused the opening handshake (client side). ``status`` is its HTTP status
    (0 when its response was not a valid handshake response), ``headers`` and ``body`` what it sent."""

    def __init__(self, status: int, reason: str, headers: Headers | None = None, body: bytes = b"") -> None:
        super().__init__(f"{status}: {reason}" if status else reason)
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
