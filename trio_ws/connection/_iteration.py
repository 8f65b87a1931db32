"""Iterating over received messages, and the JSON modes of the typed receives and sends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal, TypeVar, final

from ..protocol import CloseCode
from ._exceptions import WebSocketDisconnect

__all__ = ["JSONMode", "MessageIterator", "check_json_mode"]

T = TypeVar("T")

JSONMode = Literal["text", "binary"]


def check_json_mode(mode: str) -> None:
    """``ValueError`` unless ``mode`` is ``"text"`` or ``"binary"``."""
    if mode != "text" and mode != "binary":
        raise ValueError(f'mode must be "text" or "binary", not {mode!r}')


@final
class MessageIterator(AsyncIterator[T]):
    """Received messages until the peer closes with 1000 or 1001 (then iteration ends quietly);
    another close code raises :class:`WebSocketDisconnect`. (No async generator, no nursery.)"""

    __slots__ = ("_receive",)

    def __init__(self, receive: Callable[[], Awaitable[T]]) -> None:
        self._receive = receive

    def __aiter__(self) -> MessageIterator[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self._receive()
        except WebSocketDisconnect as exc:
            if exc.code in (CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY):
                raise StopAsyncIteration from None
            raise
