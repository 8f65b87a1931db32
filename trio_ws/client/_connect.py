"""The client: ``open_websocket_url`` and ``open_websocket``, and the handshake over any stream."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import attrs
import trio

from ..connection import HandshakeRejected, Request, WebSocket, WebSocketOptions, start_client
from ..protocol import (
    Connection,
    HandshakeError,
    Headers,
    RequestParser,
    ResponseParser,
    Role,
    accept_deflate,
    build_request,
    deflate_offer,
    validate_response,
)

__all__ = ["ClientHandshake", "connect_websocket", "open_websocket", "open_websocket_url", "run_client"]


@attrs.frozen
class ClientHandshake:
    """A client's opening handshake that succeeded: what :func:`run_client` starts."""

    stream: trio.abc.Stream
    options: WebSocketOptions
    connection: Connection
    request: Request
    subprotocol: str | None
    extensions: list[str]
    trailing: bytes


async def connect_websocket(
    stream: trio.abc.Stream,
    host: str,
    resource: str,
    options: WebSocketOptions,
    *,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
) -> ClientHandshake:
    """Run the client's opening handshake over ``stream``; :func:`run_client` then runs the
    connection. Raises :class:`HandshakeRejected` when the server refuses or answers wrongly."""
    compression = options.compression
    offer = None if compression is None else deflate_offer(compression)
    data, key = build_request(host, resource, subprotocols=subprotocols, extensions=offer, headers=headers)
    await stream.send_all(data)
    parser = ResponseParser()
    try:
        response = None
        while response is None:
            response = parser.receive_data(await stream.receive_some(65536))
        subprotocol, extensions = validate_response(
            response, key, subprotocols, ["permessage-deflate"] if compression is not None else []
        )
        deflate = None if compression is None else accept_deflate(extensions, compression)
    except HandshakeError as exc:
        body = parser.trailing
        headers_received = None
        if response is not None:
            headers_received = response.headers
            body = await _read_body(stream, body, response.headers)
        raise HandshakeRejected(exc.status, exc.reason, headers_received, body) from None
    sent = RequestParser().receive_data(data)  # what we sent, as a Request
    assert sent is not None
    scheme = "wss" if isinstance(stream, trio.SSLStream) else "ws"
    negotiated = response.headers.getlist("sec-websocket-extensions") if deflate is not None else []
    conn = Connection(Role.CLIENT, max_message_size=options.max_message_size, extension=deflate)
    return ClientHandshake(
        stream, options, conn, Request(sent, scheme=scheme), subprotocol, negotiated, parser.trailing
    )


_MAX_REFUSAL_BODY = 64 * 1024


async def _read_body(stream: trio.abc.Stream, body: bytes, headers: Headers) -> bytes:
    """The rest of a refusal's body, as ``Content-Length`` says, up to 64 KiB (for the error)."""
    try:
        length = min(int(headers.get("content-length", "0")), _MAX_REFUSAL_BODY)
    except ValueError:
        return body
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while len(body) < length:
            chunk = await stream.receive_some(length - len(body))
            if not chunk:
                break
            body += chunk
    return body[:length]


@asynccontextmanager
async def run_client(handshake: ClientHandshake) -> AsyncIterator[WebSocket]:
    """Run the connection of a client handshake for the block's duration: its tasks run in a
    nursery of their own; leaving the block closes it (1000, bounded by ``close_timeout``).
    An exception raised in the block propagates unchanged."""
    error: Exception | None = None
    async with trio.open_nursery() as nursery:
        h = handshake
        ws = start_client(
            h.stream,
            h.connection,
            nursery,
            h.options,
            request=h.request,
            subprotocol=h.subprotocol,
            extensions=h.extensions,
            trailing=h.trailing,
        )
        try:
            yield ws
        except Exception as exc:
            error = exc
        finally:
            await ws.close()
            nursery.cancel_scope.cancel()
    if error is not None:
        raise error


@asynccontextmanager
async def open_websocket(
    host: str,
    port: int,
    resource: str = "/",
    *,
    ssl_context: ssl.SSLContext | None = None,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    local_address: str | None = None,
    **options: Any,
) -> AsyncIterator[WebSocket]:
    """Connect to ``host:port`` (from ``local_address``, if given), run the handshake for
    ``resource``, and yield the
    :class:`WebSocket`; leaving the block closes it (1000, bounded by ``close_timeout``).

    Keyword ``options`` are :class:`WebSocketOptions` fields. Raises :class:`HandshakeRejected` when
    the server refuses, ``OSError`` when it cannot be reached, :class:`trio.TooSlowError` past
    ``open_timeout``. An exception raised in the block propagates unchanged.
    """
    opts = WebSocketOptions(**options)
    with trio.fail_after(opts.open_timeout):
        stream: trio.abc.Stream = await trio.open_tcp_stream(host, port, local_address=local_address)
        try:
            if ssl_context is not None:
                stream = trio.SSLStream(stream, ssl_context, server_hostname=host)
                try:
                    await stream.do_handshake()
                except trio.BrokenResourceError as exc:
                    if isinstance(exc.__cause__, ssl.SSLError):
                        raise exc.__cause__ from None  # e.g. SSLCertVerificationError
                    raise
            default_port = 443 if ssl_context is not None else 80
            host_header = host if port == default_port else f"{host}:{port}"
            if ":" in host and not host.startswith("["):
                host_header = f"[{host}]" if port == default_port else f"[{host}]:{port}"
            handshake = await connect_websocket(
                stream, host_header, resource, opts, subprotocols=subprotocols, headers=headers
            )
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
    async with run_client(handshake) as ws:
        yield ws


@asynccontextmanager
async def open_websocket_url(
    url: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    **options: Any,
) -> AsyncIterator[WebSocket]:
    """Like :func:`open_websocket`, from a ``ws://`` or ``wss://`` URL (``wss`` uses
    ``ssl_context``, or the system's default context)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    secure = parts.scheme == "wss"
    if secure and ssl_context is None:
        ssl_context = ssl.create_default_context()
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    port = parts.port or (443 if secure else 80)
    async with open_websocket(
        parts.hostname,
        port,
        resource,
        ssl_context=ssl_context if secure else None,
        subprotocols=subprotocols,
        headers=headers,
        **options,
    ) as ws:
        yield ws
