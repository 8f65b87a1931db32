"""The client: ``open_websocket_url`` and ``open_websocket``, and the handshake over any stream
(a TCP connection, a proxy's tunnel, TLS over either)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import ssl
import sys
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
    check_request_headers,
    deflate_offer,
    validate_response,
)
from ._tunnel import ProxyURL, open_tunnel

__all__ = [
    "USER_AGENT",
    "ClientHandshake",
    "connect_websocket",
    "host_header",
    "open_handshake",
    "open_websocket",
    "open_websocket_url",
    "parse_url",
    "request_headers",
    "run_client",
]


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
    connection. ``host`` is the ``Host`` header; ``headers`` are sent as well (``ValueError`` for
    one the handshake writes itself: ``Host``, ``Upgrade``, ``Connection``, ``Sec-WebSocket-*``).
    Raises :class:`HandshakeRejected` when the server refuses or answers wrongly."""
    offer = None if options.compression is None else deflate_offer(options.compression)
    data, key = build_request(host, resource, subprotocols=subprotocols, extensions=offer, headers=headers)
    return await _exchange(stream, data, key, options, subprotocols)


async def _exchange(
    stream: trio.abc.Stream, data: bytes, key: str, options: WebSocketOptions, subprotocols: Sequence[str]
) -> ClientHandshake:
    """Send the request ``data`` and read the answer (what :func:`connect_websocket` does)."""
    compression = options.compression
    await stream.send_all(data)
    parser = ResponseParser()
    eof = False
    try:
        response = None
        while response is None:
            chunk = await stream.receive_some(65536)
            eof = not chunk
            response = parser.receive_data(chunk)
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
        # A connection closed before any answer is an EOFError underneath (a server restarting).
        cause = EOFError(exc.reason) if eof else None
        raise HandshakeRejected(exc.status, exc.reason, headers_received, body) from cause
    sent = RequestParser().receive_data(data)  # what we sent, as a Request
    assert sent is not None
    scheme = "wss" if isinstance(stream, trio.SSLStream) else "ws"
    negotiated = response.headers.getlist("sec-websocket-extensions") if deflate is not None else []
    conn = Connection(Role.CLIENT, max_message_size=options.max_message_size, extension=deflate)
    request = Request(sent, scheme=scheme, response=response)
    return ClientHandshake(stream, options, conn, request, subprotocol, negotiated, parser.trailing)


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


def _user_agent() -> str:
    try:
        version = importlib.metadata.version("trio-ws")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        version = "unknown"
    return f"trio_ws/{version} Python/{sys.version_info[0]}.{sys.version_info[1]}"


#: The ``User-Agent`` header a client sends unless told otherwise: ``trio_ws/<version> Python/<x.y>``.
USER_AGENT = _user_agent()


def request_headers(
    headers: Sequence[tuple[str, str]], origin: str | None, user_agent: str | None
) -> list[tuple[str, str]]:
    """The extra request headers: ``Origin`` and ``User-Agent`` (unless ``headers`` has one), then
    ``headers``. Raises ``ValueError`` for a header the handshake writes itself, or for ``origin``
    given with an ``Origin`` header too."""
    check_request_headers(headers)
    names = {name.lower() for name, _ in headers}
    out: list[tuple[str, str]] = []
    if origin is not None:
        if "origin" in names:
            raise ValueError("origin= and an Origin header in headers= both given")
        out.append(("Origin", origin))
    if user_agent is not None and "user-agent" not in names:
        out.append(("User-Agent", user_agent))
    out.extend(headers)
    return out


def host_header(host: str, port: int, secure: bool) -> str:
    """The ``Host`` header for ``host:port``: the port only when it is not the scheme's default,
    an IPv6 address in brackets."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host if port == (443 if secure else 80) else f"{host}:{port}"


async def open_handshake(
    host: str,
    port: int,
    resource: str,
    options: WebSocketOptions,
    *,
    ssl_context: ssl.SSLContext | None = None,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    origin: str | None = None,
    user_agent: str | None = USER_AGENT,
    proxy: str | None = None,
    local_address: str | None = None,
) -> ClientHandshake:
    """Connect to ``host:port`` (through ``proxy``; with TLS when ``ssl_context`` is given) and run
    the opening handshake, within ``open_timeout``: what :func:`open_websocket` does before
    :func:`run_client`. Bad arguments raise ``ValueError`` before connecting."""
    extra = request_headers(headers, origin, user_agent)
    offer = None if options.compression is None else deflate_offer(options.compression)
    secure = ssl_context is not None
    data, key = build_request(
        host_header(host, port, secure), resource, subprotocols=subprotocols, extensions=offer, headers=extra
    )
    tunnel = None if proxy is None else ProxyURL.parse(proxy)
    with trio.fail_after(options.open_timeout):
        if tunnel is None:
            stream: trio.abc.Stream = await trio.open_tcp_stream(host, port, local_address=local_address)
        else:
            stream = await open_tunnel(tunnel, host, port, local_address=local_address)
        try:
            if ssl_context is not None:
                stream = trio.SSLStream(stream, ssl_context, server_hostname=host)
                try:
                    await stream.do_handshake()
                except trio.BrokenResourceError as exc:
                    if isinstance(exc.__cause__, ssl.SSLError):
                        raise exc.__cause__ from None  # e.g. SSLCertVerificationError
                    raise
            return await _exchange(stream, data, key, options, subprotocols)
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise


@asynccontextmanager
async def open_websocket(
    host: str,
    port: int,
    resource: str = "/",
    *,
    ssl_context: ssl.SSLContext | None = None,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    origin: str | None = None,
    user_agent: str | None = USER_AGENT,
    proxy: str | None = None,
    local_address: str | None = None,
    **options: Any,
) -> AsyncIterator[WebSocket]:
    """Connect to ``host:port`` (from ``local_address``, if given), run the handshake for
    ``resource``, and yield the :class:`WebSocket`; leaving the block closes it (1000, bounded by
    ``close_timeout``). ``ws.response`` is the server's ``101`` response.

    ``headers`` are extra request headers; ``origin`` sends an ``Origin`` header; ``user_agent``
    is the ``User-Agent`` header (``None``: none; a ``User-Agent`` in ``headers`` wins). ``proxy``
    is a proxy URL — ``http://[user:password@]host:port`` (``CONNECT``), ``socks5://``,
    ``socks5h://`` (the proxy resolves ``host``), ``socks4://``, ``socks4a://`` — which needs the
    ``socks`` extra (``python-socks``). Keyword ``options`` are :class:`WebSocketOptions` fields.

    Raises ``ValueError`` for bad arguments (a header the handshake writes itself, such as
    ``Host``), before connecting; :class:`HandshakeRejected` when the server refuses; ``OSError``
    when it (or the proxy) cannot be reached; :class:`ProxyError` when the proxy refuses;
    :class:`ssl.SSLError` when TLS fails; :class:`trio.TooSlowError` past ``open_timeout``. An
    exception raised in the block propagates unchanged.
    """
    opts = WebSocketOptions(**options)
    handshake = await open_handshake(
        host,
        port,
        resource,
        opts,
        ssl_context=ssl_context,
        subprotocols=subprotocols,
        headers=headers,
        origin=origin,
        user_agent=user_agent,
        proxy=proxy,
        local_address=local_address,
    )
    async with run_client(handshake) as ws:
        yield ws


def parse_url(url: str) -> tuple[str, int, str, bool]:
    """``(host, port, resource, secure)`` of a ``ws://`` or ``wss://`` URL; ``ValueError`` if not one."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    secure = parts.scheme == "wss"
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        port = parts.port or (443 if secure else 80)
    except ValueError:
        raise ValueError(f"invalid port in URL {url!r}") from None
    return parts.hostname, port, resource, secure


@asynccontextmanager
async def open_websocket_url(
    url: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    origin: str | None = None,
    user_agent: str | None = USER_AGENT,
    proxy: str | None = None,
    **options: Any,
) -> AsyncIterator[WebSocket]:
    """Like :func:`open_websocket`, from a ``ws://`` or ``wss://`` URL (``wss`` uses
    ``ssl_context``, or the system's default context)."""
    host, port, resource, secure = parse_url(url)
    if secure and ssl_context is None:
        ssl_context = ssl.create_default_context()
    async with open_websocket(
        host,
        port,
        resource,
        ssl_context=ssl_context if secure else None,
        subprotocols=subprotocols,
        headers=headers,
        origin=origin,
        user_agent=user_agent,
        proxy=proxy,
        **options,
    ) as ws:
        yield ws
