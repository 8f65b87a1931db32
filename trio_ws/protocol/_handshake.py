"""The opening handshake (RFC 6455 §4), both sides, over any chunking of the bytes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from http import HTTPStatus

import attrs

from ._errors import HandshakeError
from ._headers import STATUS_LINE, Headers, HeadParser, check_header, header_tokens, is_token

__all__ = [
    "ExtensionOffer",
    "RequestHead",
    "RequestParser",
    "ResponseHead",
    "ResponseParser",
    "accept_key",
    "build_request",
    "build_response",
    "check_request_headers",
    "error_response",
    "parse_extensions",
    "validate_request",
    "validate_response",
]

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_REQUEST_SIZE = 16 * 1024
MAX_HEADERS = 128


ExtensionOffer = tuple[str, list[tuple[str, str | None]]]


def accept_key(key: str | bytes) -> str:
    """``Sec-WebSocket-Accept`` for ``key`` (§4.2.2): base64(SHA-1(key + GUID))."""
    raw = key.encode("ascii") if isinstance(key, str) else key
    return base64.b64encode(hashlib.sha1(raw + GUID).digest()).decode("ascii")


@attrs.frozen
class RequestHead:
    """An HTTP request head, as received."""

    method: str
    target: str
    headers: Headers
    http_version: str = "1.1"

    @property
    def is_upgrade(self) -> bool:
        """Whether it asks to upgrade to WebSocket (a plain HTTP request does not)."""
        return any(t.lower() == "websocket" for t in header_tokens(self.headers, "upgrade"))


@attrs.frozen
class ResponseHead:
    """An HTTP response head, as received by a client."""

    status: int
    reason: str
    headers: Headers


class RequestParser(HeadParser):
    """Reads an HTTP/1.1 request head from bytes in any chunking.

    ``max_size`` bounds the head (431 beyond), ``max_headers`` the header lines (431 beyond). A
    request is refused (400) on the first byte that shows it can never be valid (binary data, a TLS
    ClientHello, a line ended by a bare LF, a malformed line), not when the head is complete.
    """

    def __init__(self, max_size: int = MAX_REQUEST_SIZE, max_headers: int = MAX_HEADERS) -> None:
        super().__init__(max_size, max_headers)

    def receive_data(self, data: bytes | bytearray) -> RequestHead | None:
        """Return the request once its head is complete, else ``None`` (feed more).

        ``b""`` (end of stream) before the head is complete raises 400. Malformed input raises
        :class:`HandshakeError` with the status to answer, as soon as the bytes show it. Next:
        :func:`validate_request`, and pass :attr:`trailing` to the connection.
        """
        if not data:
            raise HandshakeError(400, "connection closed before the request was complete")
        head = self.feed(data)
        if head is None:
            return None
        (method, target, version), headers = head
        return RequestHead(
            method=method.decode("ascii"),
            target=target.decode("latin-1"),
            headers=headers,
            http_version=version.decode("ascii"),
        )


class ResponseParser(HeadParser):
    """Reads the server's response head, on the client."""

    first_kind = STATUS_LINE
    first_name = "status line"

    def __init__(self, max_size: int = MAX_REQUEST_SIZE, max_headers: int = MAX_HEADERS) -> None:
        super().__init__(max_size, max_headers)

    def _error(self, status: int, reason: str) -> HandshakeError:
        return HandshakeError(0, f"invalid response: {reason}")

    def receive_data(self, data: bytes | bytearray) -> ResponseHead | None:
        """Return the response once its head is complete, else ``None``; next: :func:`validate_response`.

        An invalid response raises :class:`HandshakeError` with status 0.
        """
        if not data:
            raise HandshakeError(0, "connection closed before the handshake response")
        head = self.feed(data)
        if head is None:
            return None
        (status, reason), headers = head
        return ResponseHead(int(status), reason.decode("latin-1"), headers)


def _single(headers: Headers, name: str, status: int = 400) -> str:
    values = headers.getlist(name)
    if len(values) != 1:
        raise HandshakeError(status, f"{'missing' if not values else 'repeated'} {name} header")
    return values[0]


def validate_request(request: RequestHead) -> str:
    """Check a WebSocket upgrade request (§4.2.1) and return its ``Sec-WebSocket-Key``.

    Raises :class:`HandshakeError`: 426 for a plain HTTP request, whatever its method (with
    ``Upgrade: websocket``), 405 for an upgrade by a method other than GET, 426 for a version other
    than 13 (with ``Sec-WebSocket-Version: 13``), 400 for anything else malformed.
    """
    headers = request.headers
    if not request.is_upgrade:
        raise HandshakeError(
            426,
            "this resource is a WebSocket endpoint",
            [("Upgrade", "websocket"), ("Connection", "Upgrade")],
        )
    if request.method != "GET":
        raise HandshakeError(405, "the WebSocket handshake must be a GET", [("Allow", "GET")])
    if request.http_version != "1.1":
        raise HandshakeError(400, "the WebSocket handshake needs HTTP/1.1")
    if not any(t.lower() == "upgrade" for t in header_tokens(headers, "connection")):
        raise HandshakeError(400, "Connection header does not contain 'upgrade'")
    _single(headers, "host")
    versions = headers.getlist("sec-websocket-version")
    if versions != ["13"]:
        raise HandshakeError(
            426 if versions else 400,
            "unsupported WebSocket version" if versions else "missing Sec-WebSocket-Version",
            [("Sec-WebSocket-Version", "13")],
        )
    key = _single(headers, "sec-websocket-key")
    try:  # (base64 refuses text with a non-ASCII character by a plain ValueError)
        valid = key.isascii() and len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        valid = False
    if not valid:
        raise HandshakeError(400, "invalid Sec-WebSocket-Key")
    subprotocols(headers)  # malformed lists are refused here, not later
    parse_extensions(headers, 400)
    return key


def subprotocols(headers: Headers, status: int = 400) -> list[str]:
    """The subprotocols offered in ``Sec-WebSocket-Protocol``, in order."""
    names = header_tokens(headers, "sec-websocket-protocol")
    for name in names:
        if not is_token(name):
            raise HandshakeError(status, f"invalid subprotocol {name!r}")
    return names


def parse_extensions(headers: Headers, status: int = 400) -> list[ExtensionOffer]:
    """The ``Sec-WebSocket-Extensions`` list (§9.1): ``[(name, [(param, value or None), ...]), ...]``.

    Raises :class:`HandshakeError` with ``status`` for a name, parameter or value that is not a token
    (a value may be a quoted token).
    """
    out: list[ExtensionOffer] = []
    for element in header_tokens(headers, "sec-websocket-extensions"):
        name, *params = element.split(";")
        name = name.strip()
        if not is_token(name):
            raise HandshakeError(status, f"invalid extension {element!r}")
        parsed: list[tuple[str, str | None]] = []
        for param in params:
            pair = _extension_param(param)
            if pair is None:
                raise HandshakeError(status, f"invalid extension parameter in {element!r}")
            parsed.append(pair)
        out.append((name, parsed))
    return out


def _extension_param(param: str) -> tuple[str, str | None] | None:
    """``token [= (token | quoted token)]``, whitespace around each part allowed; ``None`` if not."""
    name, eq, value = param.strip().partition("=")
    name = name.rstrip()
    if not eq:
        return (name, None) if is_token(name) else None
    value = value.lstrip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return (name, value) if is_token(name) and is_token(value) else None


def _head(first_line: str, headers: Sequence[tuple[str | bytes, str | bytes]]) -> bytes:
    parts = [first_line.encode("latin-1"), b"\r\n"]
    for name, value in headers:
        bname, bvalue = check_header(name, value)
        parts += [bname, b": ", bvalue, b"\r\n"]
    parts.append(b"\r\n")
    return b"".join(parts)


def build_response(
    key: str,
    *,
    subprotocol: str | None = None,
    extensions: str | None = None,
    headers: Sequence[tuple[str | bytes, str | bytes]] = (),
) -> bytes:
    """The ``101 Switching Protocols`` response that accepts the request with ``key``."""
    parts = [_SWITCHING, accept_key(key).encode("ascii"), b"\r\n"]
    fields: list[tuple[str | bytes, str | bytes]] = []
    if subprotocol is not None:
        fields.append(("Sec-WebSocket-Protocol", subprotocol))
    if extensions:
        fields.append(("Sec-WebSocket-Extensions", extensions))
    fields.extend(headers)
    for name, value in fields:
        bname, bvalue = check_header(name, value)
        parts += [bname, b": ", bvalue, b"\r\n"]
    parts.append(b"\r\n")
    return b"".join(parts)


_SWITCHING = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
)


def error_response(
    status: int,
    body: str | bytes | None = None,
    headers: Sequence[tuple[str | bytes, str | bytes]] = (),
    *,
    content_type: str = "text/plain; charset=utf-8",
) -> bytes:
    """An HTTP response that refuses (or answers) a request and closes the connection.

    ``body`` defaults to the status's phrase; ``headers`` are added as given, but for ``Connection``:
    the response has one ``Connection`` header, the options given (``Upgrade`` for a 426, as RFC 9110
    §7.8 asks of a response with ``Upgrade``) followed by ``close``.
    """
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    if body is None:
        body = f"{status} {phrase}\n"
    data = body.encode("utf-8") if isinstance(body, str) else body
    options: list[str] = []
    others: list[tuple[str | bytes, str | bytes]] = []
    for name, value in headers:
        if _text(name).strip().lower() != "connection":
            others.append((name, value))
            continue
        for option in _text(value).split(","):
            if option.strip() and option.strip().lower() not in ("close", "keep-alive"):
                options.append(option.strip())
    options.append("close")
    fields: list[tuple[str | bytes, str | bytes]] = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(data))),
        ("Connection", ", ".join(options)),
    ]
    fields.extend(others)
    return _head(f"HTTP/1.1 {status} {phrase}", fields) + data


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("latin-1")
#: The request headers the client's handshake writes itself, and what to do instead.
_OWNED = {
    "host": "it comes from the host and port connected to (or the URL)",
    "upgrade": "the handshake writes it",
    "connection": "the handshake writes it",
    "sec-websocket-key": "the handshake writes it",
    "sec-websocket-version": "the handshake writes it",
    "sec-websocket-protocol": "offer subprotocols with subprotocols=",
    "sec-websocket-extensions": "compression= sets the extensions offered",
}


def check_request_headers(headers: Sequence[tuple[str | bytes, str | bytes]]) -> None:
    """Refuse (:class:`ValueError`) extra request headers the handshake writes itself (``Host``,
    ``Upgrade``, ``Connection`` and the ``Sec-WebSocket-*`` ones): a second copy would be refused
    by the server or break the handshake."""
    for name, _ in headers:
        text = name.decode("latin-1") if isinstance(name, bytes) else name
        hint = _OWNED.get(text.lower())
        if hint is not None:
            raise ValueError(f"cannot pass a {text} header: {hint}")


def build_request(
    host: str,
    resource: str,
    *,
    key: str | None = None,
    subprotocols: Sequence[str] = (),
    extensions: str | None = None,
    headers: Sequence[tuple[str | bytes, str | bytes]] = (),
) -> tuple[bytes, str]:
    """The client's upgrade request, and the key to check the response against.

    Raises :class:`ValueError` for an invalid ``resource``, and for extra ``headers`` that
    :func:`check_request_headers` refuses or that are malformed."""
    check_request_headers(headers)
    if key is None:
        key = base64.b64encode(os.urandom(16)).decode("ascii")
    if not resource.startswith("/") or any(c in resource for c in " \r\n"):
        raise ValueError(f"invalid resource {resource!r}")
    fields: list[tuple[str | bytes, str | bytes]] = [
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13"),
    ]
    if subprotocols:
        fields.append(("Sec-WebSocket-Protocol", ", ".join(subprotocols)))
    if extensions:
        fields.append(("Sec-WebSocket-Extensions", extensions))
    fields.extend(headers)
    return _head(f"GET {resource} HTTP/1.1", fields), key


def validate_response(
    response: ResponseHead,
    key: str,
    offered_subprotocols: Sequence[str] = (),
    offered_extensions: Sequence[str] = (),
) -> tuple[str | None, list[ExtensionOffer]]:
    """Check the server's answer (§4.1); return the chosen subprotocol and extensions.

    Raises :class:`HandshakeError` with the server's status when it refused (anything but 101), and
    with status 0 when a 101 response is invalid.
    """
    if response.status != 101:
        raise HandshakeError(response.status, f"server refused the handshake: {response.reason}")
    headers = response.headers
    if not any(t.lower() == "websocket" for t in header_tokens(headers, "upgrade")):
        raise HandshakeError(0, "response has no 'Upgrade: websocket'")
    if not any(t.lower() == "upgrade" for t in header_tokens(headers, "connection")):
        raise HandshakeError(0, "response has no 'Connection: upgrade'")
    if headers.getlist("sec-websocket-accept") != [accept_key(key)]:
        raise HandshakeError(0, "wrong Sec-WebSocket-Accept")
    chosen = subprotocols(headers, 0)
    if len(chosen) > 1 or (chosen and chosen[0] not in offered_subprotocols):
        raise HandshakeError(0, f"server chose a subprotocol that was not offered: {chosen}")
    extensions = parse_extensions(headers, 0)
    for name, _ in extensions:
        if name not in offered_extensions:
            raise HandshakeError(0, f"server chose an extension that was not offered: {name}")
    return (chosen[0] if chosen else None), extensions
