"""Choosing what the opening handshake agrees on: pure functions, no I/O.

The subprotocol (RFC 6455 §4.2.2, ``Sec-WebSocket-Protocol``) is chosen here; permessage-deflate's
parameters are negotiated by :func:`~trio_ws.protocol.negotiate_deflate` (RFC 7692 §7.1).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["choose_subprotocol"]


def choose_subprotocol(
    offered: Sequence[str], supported: Sequence[str], chosen: str | None = None
) -> str | None:
    """The subprotocol to answer with.

    ``chosen`` (what the application asked for) must be one the client ``offered``, else
    :class:`ValueError`; without it, the first offered subprotocol that the server ``supported``
    wins, or ``None`` (the response then names none).
    """
    if chosen is not None:
        if chosen not in offered:
            raise ValueError(
                f"accept(subprotocol={chosen!r}): the client did not offer it; it offered {list(offered)}"
            )
        return chosen
    return next((p for p in offered if p in supported), None)
