"""Events the sans-I/O connection produces from received bytes."""

from __future__ import annotations

import attrs

__all__ = ["BytesMessage", "CloseReceived", "Event", "MessageChunk", "Ping", "Pong", "TextMessage"]


@attrs.frozen
class TextMessage:
    """A whole text message, decoded from UTF-8."""

    data: str


@attrs.frozen
class BytesMessage:
    """A whole binary message."""

    data: bytes


@attrs.frozen
class MessageChunk:
    """A part of a message that is streamed (see ``Connection.stream_message``): the payload of one
    frame, decoded from UTF-8 for text (``str``; a character split across frames comes whole in the
    later chunk) or ``bytes`` for binary. ``final``: the message ends with this chunk."""

    data: str | bytes
    final: bool


@attrs.frozen
class Ping:
    """A ping arrived; the connection has already queued the pong (see ``data_to_send``)."""

    payload: bytes


@attrs.frozen
class Pong:
    """A pong arrived."""

    payload: bytes


@attrs.frozen
class CloseReceived:
    """The peer's close frame arrived: ``code`` (1005 when it sent none) and ``reason``.

    Unless this side had sent its close frame first, the reply is already queued in ``data_to_send``.
    """

    code: int
    reason: str


Event = TextMessage | BytesMessage | MessageChunk | Ping | Pong | CloseReceived
