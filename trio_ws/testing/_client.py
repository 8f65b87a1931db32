"""The client end of a test connection: :class:`TestClient`, and :class:`ReceiveTimeout` for a receive
that waited too long."""

from __future__ import annotations

import enum
import math
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar, final

import trio

from ..connection import ChunkIterator, WebSocket, WebSocketDisconnect
from ..protocol import CloseCode

__all__ = ["CLIENT_TIMEOUT", "DEFAULT_TIMEOUT", "ReceiveTimeout", "TestClient", "Timeout", "check_timeout"]

T = TypeVar("T")


class _ClientTimeout(enum.Enum):
    CLIENT_TIMEOUT = "the client's timeout"

    def __repr__(self) -> str:
        return "CLIENT_TIMEOUT"


#: A receive's default ``timeout``: the one :func:`~trio_ws.testing.open_test_client` was given.
CLIENT_TIMEOUT = _ClientTimeout.CLIENT_TIMEOUT

#: The test client's default receive timeout, in seconds.
DEFAULT_TIMEOUT = 5.0

Timeout = float | None | _ClientTimeout


class ReceiveTimeout(trio.TooSlowError, TimeoutError):
    """A test client's receive waited longer than its ``timeout``. It is a :class:`TimeoutError` and a
    :class:`trio.TooSlowError`; the message says what was awaited and for how long."""

    def __init__(self, awaited: str, seconds: float) -> None:
        super().__init__(f"no {awaited} within {seconds:g} second{'' if seconds == 1 else 's'}")
        #: What the receive waited for (``"text message"``, ...).
        self.awaited = awaited
        #: How long it waited, in seconds.
        self.timeout = seconds


def check_timeout(timeout: object, name: str = "timeout") -> float | None:
    """``timeout`` if it is ``None`` or a number of seconds (not negative), else a clear error."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"{name} is a number of seconds or None, not {timeout!r}")
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"{name} must be a number of seconds, 0 or more, not {timeout!r}")
    return float(timeout)


@final
class TestClient:
    """The client end of a test connection: the :class:`~trio_ws.WebSocket` API, with receives that
    take ``timeout`` first (seconds; by default the ``timeout`` of
    :func:`~trio_ws.testing.open_test_client`, 5 seconds unless it says otherwise; ``None``: wait
    for ever). A receive that waits longer raises :class:`ReceiveTimeout`. ``mode`` of the JSON
    calls is keyword-only: ``receive_json(mode="binary")``, ``send_json(data, mode="binary")``."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        ws: WebSocket,
        timeout: float | None = DEFAULT_TIMEOUT,
        server_error: Callable[[], Exception | None] = lambda: None,
    ) -> None:
        #: The underlying client :class:`~trio_ws.WebSocket`.
        self.ws = ws
        self._server_error = server_error
        #: The receives' default timeout in seconds (``None``: wait for ever).
        self.timeout = check_timeout(timeout)

    @property
    def accepted(self) -> bool:
        """Whether the server accepted the opening handshake: always ``True`` for a client that
        :func:`~trio_ws.testing.open_test_client` gave you (a refused handshake raises
        :class:`~trio_ws.testing.TestHandshakeRejected` instead), and still ``True`` once closed."""
        return True

    @property
    def closed(self) -> bool:
        """Whether the connection is closed (the closing handshake is over, or the connection
        dropped): :attr:`close_code` is then set."""
        return self.ws.close_code is not None

    @property
    def close_code(self) -> int | None:
        """The close code, once the connection is closed (``None`` before)."""
        return self.ws.close_code

    @property
    def close_reason(self) -> str:
        """The close reason, once the connection is closed."""
        return self.ws.close_reason

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server chose."""
        return self.ws.subprotocol

    async def _within(self, timeout: Timeout, awaited: str, receive: Callable[[], Awaitable[T]]) -> T:
        seconds = self.timeout if timeout is CLIENT_TIMEOUT else check_timeout(timeout)
        try:
            if seconds is None:
                return await receive()
            with trio.move_on_after(seconds):
                return await receive()
        except WebSocketDisconnect as exc:
            failure = self._server_error() if exc.code == CloseCode.INTERNAL_ERROR else None
            if failure is not None:  # the handler's own exception says more than 1011
                raise failure from None
            raise
        raise ReceiveTimeout(awaited, seconds)

    async def receive(self, timeout: Timeout = CLIENT_TIMEOUT) -> str | bytes:
        """The next message (``str`` or ``bytes``). Raises :class:`~trio_ws.WebSocketDisconnect` once
        the connection is closed, :class:`ReceiveTimeout` past ``timeout``."""
        return await self._within(timeout, "message", self.ws.receive)

    async def receive_text(self, timeout: Timeout = CLIENT_TIMEOUT) -> str:
        """The next message, which must be text (a binary one closes the connection with 1003)."""
        return await self._within(timeout, "text message", self.ws.receive_text)

    async def receive_bytes(self, timeout: Timeout = CLIENT_TIMEOUT) -> bytes:
        """The next message, which must be binary (a text one closes the connection with 1003)."""
        return await self._within(timeout, "binary message", self.ws.receive_bytes)

    async def receive_json(
        self, timeout: Timeout = CLIENT_TIMEOUT, *, mode: Literal["text", "binary"] = "text"
    ) -> Any:
        """The next message, a text (or, with ``mode="binary"``, binary) one, parsed as JSON."""
        if isinstance(timeout, str):
            hint = f"mode is keyword-only: receive_json(mode={timeout!r})"
            raise TypeError(f"timeout is a number of seconds, not {timeout!r}; {hint}")

        async def receive() -> Any:
            return await self.ws.receive_json(mode)

        return await self._within(timeout, f"JSON {mode} message", receive)

    def receive_streaming(self) -> ChunkIterator:
        """The next message in chunks as they arrive (``async for chunk in
        client.receive_streaming():``), as :meth:`~trio_ws.WebSocket.receive_streaming`; no
        timeout of its own (wrap it in ``trio.fail_after`` if the server may stay silent)."""
        return self.ws.receive_streaming()

    async def send_text(self, data: str) -> None:
        """Send a text message."""
        await self.ws.send_text(data)

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary message."""
        await self.ws.send_bytes(data)

    async def send_json(self, data: Any, *, mode: Literal["text", "binary"] = "text") -> None:
        """Send ``data`` as JSON, in a text (or, with ``mode="binary"``, binary) message."""
        await self.ws.send_json(data, mode)

    async def ping(self, payload: bytes | None = None) -> float:
        """Ping the server and wait for the pong."""
        return await self.ws.ping(payload)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection and wait for the closing handshake."""
        await self.ws.close(code, reason)

    async def wait_closed(self, timeout: Timeout = CLIENT_TIMEOUT) -> int:
        """Wait until the server closes the connection, discarding messages; return the close code.
        Raises :class:`ReceiveTimeout` past ``timeout``."""

        async def drain() -> int:
            while True:
                try:
                    await self.ws.receive()
                except Exception:
                    break
            assert self.ws.close_code is not None
            return self.ws.close_code

        return await self._within(timeout, "close from the server", drain)
