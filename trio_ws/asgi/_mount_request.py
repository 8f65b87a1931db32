"""The HTTP request a :class:`~trio_ws.WebSocketServer` reads for an ASGI scope, and the scope's
client address and scheme.

A ``websocket`` scope becomes a WebSocket upgrade request: its method GET, its target the path
(``raw_path`` as sent when it agrees with ``path``) and query string, its headers the scope's but
for those of the handshake itself, which are written anew — the ASGI server did the real handshake
and owns the extensions, so no ``Sec-WebSocket-Extensions`` is offered, and the subprotocols are the
scope's ``subprotocols``. An ``http`` scope becomes its own method and target with its headers (no
body: the server answers plain HTTP from the head alone).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote

from ..protocol import check_header
from ._asgi_types import Scope

__all__ = ["request_head", "scope_client", "scope_scheme"]

#: A valid ``Sec-WebSocket-Key`` (the server answers it; nobody checks the answer on this hop).
_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
#: Headers of the scope that the request does not carry over.
_HANDSHAKE = frozenset(
    {
        b"host",
        b"upgrade",
        b"connection",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-protocol",
        b"sec-websocket-extensions",
        b"sec-websocket-accept",
        b"content-length",
        b"transfer-encoding",
        b"keep-alive",
    }
)
_PLAIN = frozenset({b"host", b"content-length", b"transfer-encoding"})
_SAFE = "/!$&'()*+,;=:@-._~"  # what a path may hold unencoded (RFC 3986 pchar), but "%"
_SCHEMES = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}


def _target(scope: Scope) -> bytes:
    path = scope.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        path = "/" + (path if isinstance(path, str) else "")
    raw = scope.get("raw_path")
    target = None
    if isinstance(raw, bytes) and raw.startswith(b"/") and not any(c in raw for c in b" \r\n\t?#"):
        text = raw.decode("latin-1")
        if unquote(text) == path:
            target = raw
    if target is None:
        target = quote(path, safe=_SAFE).encode("ascii")
    query = scope.get("query_string") or b""
    if isinstance(query, bytes) and query and not any(c in query for c in b" \r\n\t#"):
        target += b"?" + query
    return target


def _host(scope: Scope) -> bytes:
    """The first ``Host`` header; else the scope's ``server``; else ``localhost``."""
    host = None
    for name, value in scope.get("headers") or ():
        if bytes(name).lower() == b"host":
            host = bytes(value)
            break
    if host is None:
        server: Any = scope.get("server")
        if isinstance(server, (tuple, list)) and len(server) == 2 and isinstance(server[1], int):
            host = f"{server[0]}:{server[1]}".encode("latin-1", "replace")
    try:
        return check_header(b"host", host or b"localhost")[1]
    except ValueError:
        return b"localhost"


def request_head(scope: Scope) -> bytes:
    """The request head for ``scope`` (see the module). Headers that could not be written on the
    wire (a name that is not a token, CR or LF in a value) are left out."""
    websocket = scope.get("type") == "websocket"
    method = b"GET" if websocket else str(scope.get("method") or "GET").encode("latin-1", "replace")
    skip = _HANDSHAKE if websocket else _PLAIN
    lines = [method + b" " + _target(scope) + b" HTTP/1.1", b"Host: " + _host(scope)]
    if websocket:
        lines += [
            b"Upgrade: websocket",
            b"Connection: Upgrade",
            b"Sec-WebSocket-Key: " + _KEY,
            b"Sec-WebSocket-Version: 13",
        ]
        offered = [p for p in scope.get("subprotocols") or () if isinstance(p, str) and p]
        if offered:
            lines.append(b"Sec-WebSocket-Protocol: " + ", ".join(offered).encode("latin-1", "replace"))
    for name, value in scope.get("headers") or ():
        lowered = bytes(name).lower()
        if lowered in skip or lowered.startswith(b":"):
            continue
        try:
            bname, bvalue = check_header(bytes(name), bytes(value))
        except ValueError:
            continue
        lines.append(bname + b": " + bvalue)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def scope_client(scope: Scope) -> tuple[str, int] | None:
    """The scope's ``client`` as ``(host, port)``; ``None`` when it gives none (or no port)."""
    client: Any = scope.get("client")
    try:
        host, port = client
    except (TypeError, ValueError):
        return None
    if not isinstance(port, int):
        return None
    return (str(host), port)


def scope_scheme(scope: Scope) -> str:
    """``ws`` or ``wss``, from the scope's ``scheme`` (``http``/``https`` count as the same)."""
    return _SCHEMES.get(str(scope.get("scheme") or "ws"), "ws")
