"""Errors of the sans-I/O core.

Each error carries the hint the I/O edge needs: an HTTP status for the opening handshake, a close code
for everything after it. The edge turns them into a response or a close frame; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["HandshakeError", "LocalProtocolError", "ProtocolError"]


class ProtocolError(Exception):
    """The peer broke RFC 6455 (or a limit of ours) after the opening handshake.

    ``code`` is the close code to fail the connection with (RFC 6455 §7.4.1): 1002 for framing errors,
    1007 for invalid UTF-8, 1009 for a message over the size limit.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class HandshakeError(Exception):
    """The opening handshake cannot go on.

    On the server, ``status`` is the HTTP status to answer with (400, 405, 426, 431, …) and ``headers``
    any extra response headers that status needs (``Sec-WebSocket-Version: 13`` with 426, for example).
    On the client, ``status`` is the status the server answered with, or 0 when the response itself
    was invalid.
    """

    def __init__(self, status: int, reason: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(f"{status}: {reason}" if status else reason)
        self.status = status
        self.reason = reason
        self.headers = tuple(headers)


class LocalProtocolError(Exception):
    """This side asked for something the protocol forbids in the current state (a programming error),
    such as sending after the close frame went out, or a control frame payload over 125 bytes."""
