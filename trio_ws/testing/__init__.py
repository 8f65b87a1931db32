"""Test a handler without a socket: the real server and client code paths over
``trio.testing.memory_stream_pair()``."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal, final

import trio
import trio.testing

from ..client import connect_websocket, run_client
from ..connection import WebSocket, WebSocketOptions
from ..server import Handler, ProcessRequest, ProcessResponse, WebSocketServer

__all__ = ["TestClient", "open_test_client"]


@final
class TestClient:
    """The client end of a test connection: the :class:`~trio_ws.WebSocket` API, with receives that
    take ``timeout=`` (seconds; :class:`trio.TooSlowError` past it)."""

    __test__ = False  # not a pytest test class

    def __init__(self, ws: WebSocket) -> None:
        #: The underlying client :class:`~trio_ws.WebSocket`.
        self.ws = ws

    @property
    def close_code(self) -> int | None:
        """The close code, once the connection is closed."""
        return self.ws.close_code

    @property
    def close_reason(self) -> str:
        """The close reason, once the connection is closed."""
        return self.ws.close_reason

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server chose."""
        return self.ws.subprotocol

    async def receive(self, timeout: float | None = None) -> str | bytes:
        """The next message (``str`` or ``bytes``)."""
        with trio.fail_after(math.inf if timeout is None else timeout):
            return await self.ws.receive()

    async def receive_text(self, timeout: float | None = None) -> str:
        """The next message, which must be text."""
        with trio.fail_after(math.inf if timeout is None else timeout):
            return await self.ws.receive_text()

    async def receive_bytes(self, timeout: float | None = None) -> bytes:
        """The next message, which must be binary."""
        with trio.fail_after(math.inf if timeout is None else timeout):
            return await self.ws.receive_bytes()

    async def receive_json(
        self, mode: Literal["text", "binary"] = "text", timeout: float | None = None
    ) -> Any:
        """The next message, parsed as JSON."""
        with trio.fail_after(math.inf if timeout is None else timeout):
            return await self.ws.receive_json(mode)

    async def send_text(self, data: str) -> None:
        """Send a text message."""
        await self.ws.send_text(data)

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary message."""
        await self.ws.send_bytes(data)

    async def send_json(self, data: Any, mode: Literal["text", "binary"] = "text") -> None:
        """Send ``data`` as JSON."""
        await self.ws.send_json(data, mode)

    async def ping(self, payload: bytes | None = None) -> float:
        """Ping the server and wait for the pong."""
        return await self.ws.ping(payload)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection and wait for the closing handshake."""
        await self.ws.close(code, reason)

    async def wait_closed(self, timeout: float | None = None) -> int:
        """Wait until the server closes the connection, discarding messages; return the close code."""
        with trio.fail_after(math.inf if timeout is None else timeout):
            while True:
                try:
                    await self.ws.receive()
                except Exception:
                    break
        assert self.ws.close_code is not None
        return self.ws.close_code


@asynccontextmanager
async def open_test_client(
    handler: Handler,
    path: str = "/",
    *,
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    query_string: str = "",
    subprotocols: Sequence[str] = (),
    server_subprotocols: Sequence[str] = (),
    process_request: ProcessRequest | None = None,
    process_response: ProcessResponse | None = None,
    **options: Any,
) -> AsyncIterator[TestClient]:
    """Serve ``handler`` over an in-memory stream pair and connect a :class:`TestClient` to ``path``.

    ``headers`` (a dict or pairs) and ``query_string`` (without ``?``) go into the request, which
    carries ``Host: testserver``; ``server_subprotocols``, ``process_request`` and
    ``process_response`` are the server's (see :func:`~trio_ws.open_websocket_server`).

    Keyword ``options`` (:class:`~trio_ws.WebSocketOptions` fields) apply to both ends; keepalive
    pings are off unless asked for. A refused handshake raises :class:`~trio_ws.HandshakeRejected`
    with the HTTP status. Leaving the block closes the connection and waits for the handler.
    Exceptions raised in the block propagate unchanged (no ``ExceptionGroup``).
    """
    options.setdefault("ping_interval", None)
    opts = WebSocketOptions(**options)
    server = WebSocketServer(
        handler,
        opts,
        subprotocols=server_subprotocols,
        process_request=process_request,
        process_response=process_response,
    )
    header_pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
    client_stream, server_stream = trio.testing.memory_stream_pair()
    resource = path + (f"?{query_string}" if query_string else "")
    error: Exception | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_stream, server_stream)
        try:
            try:
                handshake = await connect_websocket(
                    client_stream,
                    "testserver",
                    resource,
                    opts,
                    subprotocols=subprotocols,
                    headers=header_pairs,
                )
            except BaseException:
                await trio.aclose_forcefully(client_stream)
                raise
            async with run_client(handshake) as ws:
                yield TestClient(ws)
        except Exception as exc:  # raised again, unchanged, once the nursery is done
            error = exc
    if error is not None:
        raise error
