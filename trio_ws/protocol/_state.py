"""The connection's state machine (RFC 6455 §7), as a table of the moves it may make: a move that
is not in the table is a bug of the caller and raises :class:`LocalProtocolError`."""

from __future__ import annotations

import enum
from typing import Final

from ._errors import LocalProtocolError

__all__ = ["TRANSITIONS", "ConnectionState", "Role", "next_state"]


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
TRANSITIONS: Final[dict[tuple[ConnectionState, str], ConnectionState]] = {
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


def next_state(state: ConnectionState, event: str) -> ConnectionState:
    """The state after ``event`` (``send_close``, ``receive_close``, ``fail``, ``end_of_stream``)."""
    try:
        return TRANSITIONS[state, event]
    except KeyError:
        raise LocalProtocolError(f"cannot {event} in state {state.name}") from None
