"""Serving a handler to a test client: :func:`open_test_client`, and :class:`TestHandshakeRejected`
for a handshake the server refused."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import trio
import trio.testing

from ..app import AuthBackend, Guard, RateLimit, SecurityPolicy
from ..client import connect_websocket, run_client
from ..connection import HandshakeRejected, WebSocket, WebSocketOptions
from ..protocol import Headers
from ..server import (
    Handler,
    ProcessRequest,
    ProcessResponse,
    ServerObserver,
    WebSocketServer,
    handler_ending,
)
from ._client import DEFAULT_TIMEOUT, TestClient, check_timeout

__all__ = ["TestHandshakeRejected", "open_test_client"]


class TestHandshakeRejected(HandshakeRejected, PermissionError):
    """The server refused the test client's opening handshake. It is a
    :class:`~trio_ws.HandshakeRejected` (``status``, ``headers``, ``body``) and a
    :class:`PermissionError`; its message is the status and what the server said, for example
    ``"403 Forbidden: Origin not allowed"`` or ``"401 Unauthorized: Authentication required"``."""

    __test__ = False  # not a pytest test class

    def __init__(self, status: int, reason: str, headers: Headers | None = None, body: bytes = b"") -> None:
        super().__init__(status, reason, headers, body)
        self.args = (_describe(status, reason, body),)


def _describe(status: int, reason: str, body: bytes) -> str:
    """``"403 Forbidden: Origin not allowed"``: the status, its phrase and the body's first line."""
    if not status:  # not an HTTP refusal: an invalid handshake response
        return reason
    try:
        head = f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        head = str(status)
    text = body.decode("utf-8", "replace").strip().partition("\n")[0].strip()
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{head}: {text}" if text and text != head else head


@asynccontextmanager
async def open_test_client(
    handler: Handler,
    path: str = "/",
    *,
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    query_string: str = "",
    subprotocols: Sequence[str] = (),
    timeout: float | None = DEFAULT_TIMEOUT,
    server_subprotocols: Sequence[str] = (),
    server_header: str | None = "trio_ws",
    max_request_size: int = 16 * 1024,
    process_request: ProcessRequest | None = None,
    process_response: ProcessResponse | None = None,
    origins: Sequence[str] | None = None,
    require_origin: bool = False,
    rate_limit: RateLimit | None = None,
    auth: Sequence[AuthBackend] = (),
    guards: Sequence[Guard] = (),
    max_connections: int | None = None,
    max_connections_per_client: int | None = None,
    trusted_proxies: Sequence[str] = (),
    proxy_headers: str = "x-forwarded",
    max_buffered_bytes: int | None = None,
    observer: ServerObserver | None = None,
    access_log_query: bool = False,
    raise_server_exceptions: bool = True,
    **options: Any,
) -> AsyncIterator[TestClient]:
    """Serve ``handler`` over an in-memory stream pair and connect a :class:`TestClient` to ``path``.

    ``headers`` (a dict or pairs) and ``query_string`` (without ``?``) go into the request, which
    carries ``Host: testserver``; ``subprotocols`` are those the client offers. ``timeout``: every
    receive's default timeout in seconds (a call's own ``timeout=`` overrides it; ``None``: wait for
    ever); past it a receive raises :class:`~trio_ws.testing.ReceiveTimeout`.

    The server's settings are those of :func:`~trio_ws.open_websocket_server`: ``server_subprotocols``
    (its ``subprotocols``), ``server_header``, ``max_request_size``, the hooks ``process_request``
    and ``process_response``, the security checks ``origins``, ``require_origin``, ``rate_limit``,
    ``auth``, ``guards``, ``max_connections``, ``max_connections_per_client``, ``trusted_proxies``,
    ``proxy_headers`` and ``max_buffered_bytes``, and ``observer`` and ``access_log_query``. Each
    call serves its own server: connection counts do not carry over from one test client to the next (a
    :class:`~trio_ws.RateLimit` object given to several does), and the in-memory connection has no
    client address (``ws.client`` is ``None``), so ``trusted_proxies`` changes nothing.

    Keyword ``options`` (:class:`~trio_ws.WebSocketOptions` fields) apply to both ends; keepalive
    pings are off unless asked for. A refused handshake raises
    :class:`~trio_ws.testing.TestHandshakeRejected` (a :class:`~trio_ws.HandshakeRejected` and a
    :class:`PermissionError`) with the HTTP status and the server's reason in its message. Leaving
    the block closes the connection and waits for the handler. Exceptions raised in the block
    propagate unchanged (no ``ExceptionGroup``).

    ``raise_server_exceptions`` (on by default): when the handler fails — raises anything but
    :class:`~trio_ws.WebSocketClose` or :class:`~trio_ws.WebSocketDisconnect` — its exception is
    raised in the test, with its own traceback, rather than only a close code: from the receive
    that sees the connection close with 1011 (or the handshake refused with 500), else when the
    block is left. ``False``: the test sees what a real client sees (1011, or the 500 refusal).
    """
    check_timeout(timeout)
    options.setdefault("ping_interval", None)
    opts = WebSocketOptions(**options)
    failures: list[Exception] = []

    async def watched(ws: WebSocket) -> None:
        try:
            await handler(ws)
        except Exception as exc:
            if raise_server_exceptions and handler_ending(exc) is None:
                failures.append(exc)  # (the server still logs it and closes with 1011)
            raise

    def server_error() -> Exception | None:
        return failures[0] if failures else None

    server = WebSocketServer(
        watched,
        opts,
        subprotocols=server_subprotocols,
        server_header=server_header,
        max_request_size=max_request_size,
        process_request=process_request,
        process_response=process_response,
        policy=SecurityPolicy.build(origins, require_origin, rate_limit, auth, guards),
        max_connections=max_connections,
        max_connections_per_client=max_connections_per_client,
        trusted_proxies=trusted_proxies,
        proxy_headers=proxy_headers,
        max_buffered_bytes=max_buffered_bytes,
        observer=observer,
        access_log_query=access_log_query,
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
            except HandshakeRejected as exc:
                await trio.aclose_forcefully(client_stream)
                if exc.status == 500 and failures:
                    raise failures[0] from None
                raise TestHandshakeRejected(exc.status, exc.reason, exc.headers, exc.body) from None
            except BaseException:
                await trio.aclose_forcefully(client_stream)
                raise
            async with run_client(handshake) as ws:
                yield TestClient(ws, timeout, server_error)
        except Exception as exc:  # raised again, unchanged, once the nursery is done
            error = exc
    if error is None and failures:
        error = failures[0]
    if error is not None:
        raise error
