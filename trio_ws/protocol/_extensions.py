"""The hook a negotiated per-message extension (RFC 7692 permessage-deflate, for one) plugs into."""

from __future__ import annotations

import abc

__all__ = ["Extension"]


class Extension(abc.ABC):
    """An extension that marks transformed messages with RSV1 on their first frame (RFC 6455 §9).

    The connection calls :meth:`decode` with each piece of a received message's payload whose first
    frame had RSV1 set, and :meth:`encode` with each whole message it sends.
    """

    #: The extension's token in ``Sec-WebSocket-Extensions``.
    name: str = ""

    @abc.abstractmethod
    def decode(self, data: bytes, *, final: bool, max_length: int | None) -> bytes:
        """Return the decoded bytes for one more piece of a message (``final`` on its last piece).

        Must return at most ``max_length`` bytes (``None``: no limit), doing bounded work, and raise
        :class:`~trio_ws.protocol.ProtocolError` (1009 past the limit, 1007 or 1002 on corrupt input).
        """

    @abc.abstractmethod
    def encode(self, data: bytes) -> tuple[bytes, bool]:
        """Return ``(payload, rsv1)`` for one whole message; ``rsv1=False`` sends it untransformed."""
