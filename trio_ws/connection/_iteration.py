"""Iterating over received messages and over the chunks of one, and the JSON modes of the typed
receives and sends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal, TypeVar, final

import trio

from ..protocol import CloseCode
from ._exceptions import WebSocketDisconnect
from ._pacing import yield_if_due
from ._reception import Reception

__all__ = ["ChunkIterator", "JSONMode", "MessageIterator", "check_json_mode"]

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


@final
class ChunkIterator(AsyncIterator[str | bytes]):
    """The chunks of one received message as they arrive: what ``WebSocket.receive_streaming()``
    returns. Each chunk is ``str`` (text) or ``bytes`` (binary). (No async generator, no nursery.)"""

    __slots__ = ("_disconnect", "_done", "_receiver", "_started")

    def __init__(self, receiver: Reception, disconnect: Callable[[], WebSocketDisconnect]) -> None:
        self._receiver = receiver
        self._disconnect = disconnect
        self._started = False  # a chunk was returned
        self._done = False  # the last chunk was returned

    def __aiter__(self) -> ChunkIterator:
        return self

    async def __anext__(self) -> str | bytes:
        if self._done:
            await trio.lowlevel.checkpoint()
            raise StopAsyncIteration
        await trio.lowlevel.checkpoint_if_cancelled()
        chunk = await self._receiver.next_chunk(self, not self._started)
        if chunk is None:
            await trio.lowlevel.cancel_shielded_checkpoint()  # a loop of failing receives yields
            raise self._disconnect()
        data, self._done = chunk
        self._started = True
        await yield_if_due()
        return data
