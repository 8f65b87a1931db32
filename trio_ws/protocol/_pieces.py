"""Assembling a message from its pieces without an object per fragment."""

from __future__ import annotations

from typing import Any, Final, final

__all__ = ["Pieces"]

#: A piece shorter than this is batched with the next small ones instead of kept on its own.
SMALL: Final = 4096
#: How many small pieces are joined into one.
BATCH: Final = 64


@final
class Pieces:
    """The pieces of one message (``str`` or ``bytes``, as ``empty``), in order.

    Large pieces (the reads of a big frame) are kept as they are and joined once at the end; small
    ones (tiny fragments) are joined in batches as they come, so a message of a million one-byte
    fragments holds about a thousandth as many objects.
    """

    __slots__ = ("_empty", "_parts", "_small", "size")

    def __init__(self, empty: Any) -> None:
        self._empty = empty
        self._parts: list[Any] = []
        self._small: list[Any] = []
        #: The length of the pieces so far (characters or bytes).
        self.size = 0

    def add(self, piece: Any) -> None:
        """Append ``piece``."""
        self.size += len(piece)
        if len(piece) >= SMALL:
            if self._small:
                self._flush()
            self._parts.append(piece)
            return
        small = self._small
        small.append(piece)
        if len(small) >= BATCH:
            self._flush()

    @property
    def objects(self) -> int:
        """How many objects hold the pieces now."""
        return len(self._parts) + len(self._small)

    def _flush(self) -> None:
        self._parts.append(self._empty.join(self._small))
        self._small.clear()

    def join(self) -> Any:
        """The whole message."""
        if self._small:
            self._flush()
        parts = self._parts
        return parts[0] if len(parts) == 1 else self._empty.join(parts)
