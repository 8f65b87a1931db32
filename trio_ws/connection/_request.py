"""What a connection request is: its URL and parts, headers, query parameters, cookies, client.

:class:`Request` is what the server's handler sees as ``ws.request`` (and the HTTP hook as its
argument); the parts are parsed on first use, so a handler that never looks pays nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, final
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

import attrs

from ..protocol import Headers, RequestHead, ResponseHead, subprotocols

__all__ = ["URL", "HTTPResponse", "QueryParams", "Request", "RequestView"]


@final
class URL(str):
    """A URL: a ``str`` with its parts as properties (``ws://host:port/path?query``)."""

    __slots__ = ("_parts",)
    _parts: SplitResult

    def __new__(cls, url: str) -> URL:
        self = super().__new__(cls, url)
        try:
            self._parts = urlsplit(url)
        except ValueError:  # a malformed host (``[::1``): keep the rest readable, the host empty
            scheme, _, rest = url.partition("://")
            path = "/" + rest.partition("/")[2]
            path, _, query = path.partition("?")
            self._parts = SplitResult(scheme, "", path, query, "")
        return self

    @property
    def parts(self) -> SplitResult:
        """The :func:`urllib.parse.urlsplit` result."""
        return self._parts

    @property
    def scheme(self) -> str:
        """``ws`` or ``wss``."""
        return str(self._parts.scheme)

    @property
    def hostname(self) -> str | None:
        """The host, lower-cased, without port or IPv6 brackets."""
        return self._parts.hostname

    @property
    def port(self) -> int | None:
        """The port written in the URL (the ``Host`` header), ``None`` when absent."""
        try:
            return self._parts.port
        except ValueError:
            return None

    @property
    def netloc(self) -> str:
        """``host[:port]`` as written."""
        return self._parts.netloc

    @property
    def path(self) -> str:
        """The path as sent, still percent-encoded (``Request.path`` is decoded)."""
        return self._parts.path

    @property
    def query(self) -> str:
        """The query string, without ``?``, still percent-encoded."""
        return self._parts.query

    @property
    def is_secure(self) -> bool:
        """Whether the scheme is ``wss`` or ``https``."""
        return self._parts.scheme in ("wss", "https")

    def __repr__(self) -> str:
        return f"URL({str(self)!r})"


@final
class QueryParams(Mapping[str, str]):
    """Immutable query parameters: ``params["k"]`` is the first value, ``getlist("k")`` every value,
    ``multi_items()`` every pair in order. Keys and values are percent-decoded (``+`` is a space);
    blank values are kept."""

    __slots__ = ("_index", "_items")

    def __init__(self, query: str | Iterable[tuple[str, str]] = "") -> None:
        items = parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else query
        self._items = tuple(items)
        index: dict[str, list[str]] = {}
        for key, value in self._items:
            index.setdefault(key, []).append(value)
        self._index = index

    def __getitem__(self, key: str) -> str:
        return self._index[key][0]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def getlist(self, key: str) -> list[str]:
        """Every value of ``key`` in order; ``[]`` when absent."""
        return list(self._index.get(key, ()))

    def multi_items(self) -> list[tuple[str, str]]:
        """Every ``(key, value)`` pair, in order, repeats included."""
        return list(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, QueryParams):
            return self._items == other._items
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        return f"QueryParams({list(self._items)!r})"


def parse_cookies(headers: Headers) -> dict[str, str]:
    """The ``Cookie`` header(s) as a dict, leniently as browsers send them: pairs split on ``;``,
    surrounding quotes removed, the first of a repeated name kept, malformed pieces skipped."""
    cookies: dict[str, str] = {}
    for header in headers.getlist("cookie"):
        for piece in header.split(";"):
            name, eq, value = piece.partition("=")
            name, value = name.strip(), value.strip()
            if not eq or not name:
                continue
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            cookies.setdefault(name, unquote(value))
    return cookies


@final
class Request:
    """The opening request of a connection, as the server received it.

    ``method``, ``target`` (path and query as sent), ``http_version`` and ``headers`` come from the
    wire; ``url``, ``path`` (percent-decoded), ``query_params``, ``cookies``, ``subprotocols``
    (offered, in order) and ``extensions`` (offered ``Sec-WebSocket-Extensions`` elements) are
    parsed from them on first use. ``client`` is the peer's ``(host, port)`` on a socket, ``None``
    otherwise; ``scheme`` (``ws`` or ``wss``) and ``host`` are the connection's and the ``Host``
    header's. Behind a trusted proxy (the server's ``trusted_proxies``) all three are what the proxy
    forwarded (``Forwarded``, ``X-Forwarded-For`` / ``-Proto`` / ``-Host``). ``path_params`` is
    filled by a :class:`~trio_ws.Router` with converted values. On a client it is the request sent,
    and ``response`` the server's ``101`` answer.
    """

    def __init__(
        self,
        raw: RequestHead,
        *,
        scheme: str = "ws",
        client: tuple[str, int] | None = None,
        host: str | None = None,
        response: ResponseHead | None = None,
        root_path: str = "",
    ) -> None:
        self.raw = raw
        self.method = raw.method
        self.target = raw.target
        self.http_version = raw.http_version
        self.headers = raw.headers
        #: ``ws`` or ``wss``: the connection's, or what a trusted proxy forwarded.
        self.scheme = scheme
        self.client = client
        self._host = host
        self._url: tuple[str, str, URL] | None = None  # (scheme, host, the URL they make)
        #: The server's ``101`` response to this request (client side), else ``None``.
        self.response = response
        #: Path parameters of the matched route, converted (filled by a Router).
        self.path_params: dict[str, Any] = {}
        #: The path prefix the handler is mounted at (an ASGI ``root_path``, such as a Starlette
        #: ``Mount``'s): ``path`` still holds it, ``route_path`` is what follows it.
        self.root_path = root_path.rstrip("/")
        #: Why the credentials sent did not verify (``"token expired"``), when no authentication
        #: backend accepted them; ``None`` otherwise (the application layer's checks set it).
        self.auth_error: str | None = None

    @property
    def host(self) -> str:
        """``host[:port]`` the client asked for: the ``Host`` header, or what a trusted proxy
        forwarded (``X-Forwarded-Host``, ``Forwarded: host=``)."""
        return self.headers.get("host", "") if self._host is None else self._host

    @host.setter
    def host(self, value: str) -> None:
        self._host = value

    @property
    def url(self) -> URL:
        """The full URL: ``scheme``, ``host`` (the ``Host`` header, or a trusted proxy's
        ``X-Forwarded-Host``) and the target."""
        scheme, host = self.scheme, self.host
        cached = self._url
        if cached is not None and cached[0] == scheme and cached[1] == host:
            return cached[2]
        url = URL(f"{scheme}://{host}{self.target}")
        self._url = (scheme, host, url)
        return url

    @functools.cached_property
    def path(self) -> str:
        """The path, percent-decoded (what routes match against)."""
        return unquote(self.target.partition("?")[0].partition("#")[0])

    @property
    def route_path(self) -> str:
        """What routes match against: :attr:`path` without :attr:`root_path` (``/ws/chat/1`` mounted
        at ``/ws``: ``/chat/1``); the whole path when it is not under ``root_path``."""
        root, path = self.root_path, self.path
        if not root or not path.startswith(root):
            return path
        rest = path[len(root) :]
        if not rest:
            return "/"
        return rest if rest[0] == "/" else path

    @functools.cached_property
    def query_params(self) -> QueryParams:
        """The query parameters."""
        return QueryParams(self.target.partition("?")[2].partition("#")[0])

    @functools.cached_property
    def cookies(self) -> dict[str, str]:
        """The cookies the client sent."""
        return parse_cookies(self.headers)

    @functools.cached_property
    def subprotocols(self) -> list[str]:
        """The subprotocols the client offered, in its order of preference."""
        return subprotocols(self.headers)

    @functools.cached_property
    def extensions(self) -> list[str]:
        """The ``Sec-WebSocket-Extensions`` elements the client offered."""
        return [
            e.strip()
            for v in self.headers.getlist("sec-websocket-extensions")
            for e in v.split(",")
            if e.strip()
        ]

    @property
    def is_upgrade(self) -> bool:
        """Whether this asks for a WebSocket (``Upgrade: websocket``); ``False`` for plain HTTP."""
        return self.raw.is_upgrade

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target} from {self.client}>"


class RequestView:
    """The opening request's parts as properties of a connection (``ws.url``, ``ws.headers``...).

    For a class with a ``request`` attribute."""

    __slots__ = ()
    request: Request | None

    def _request(self) -> Request:
        if self.request is None:
            raise RuntimeError("this WebSocket has no request")
        return self.request

    @property
    def path(self) -> str:
        """The request's path, percent-decoded, without the query string."""
        return "/" if self.request is None else self.request.path

    @property
    def url(self) -> URL:
        """The request's URL (``ws.url.path``, ``.query``, ``.hostname``, ``.port``, ``.scheme``...)."""
        return self._request().url

    @property
    def headers(self) -> Headers:
        """The request's headers: case-insensitive, ``getlist`` for repeats, ``raw`` bytes."""
        return self._request().headers

    @property
    def query_params(self) -> QueryParams:
        """The request's query parameters (``["k"]`` first value, ``getlist("k")`` all)."""
        return self._request().query_params

    @property
    def cookies(self) -> dict[str, str]:
        """The request's cookies."""
        return self._request().cookies

    @property
    def path_params(self) -> dict[str, Any]:
        """The matched route's path parameters, converted."""
        return self._request().path_params

    @property
    def response(self) -> ResponseHead | None:
        """Client side: the server's ``101`` response — ``status``, ``reason`` and ``headers`` (a
        :class:`~trio_ws.protocol.ResponseHead`); ``None`` on a server."""
        return None if self.request is None else self.request.response


def _body(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def _headers(value: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(value)


@attrs.frozen
class HTTPResponse:
    """A plain HTTP response, for the server's HTTP hook (health checks, pages, redirects).

    ``body`` (``str`` is sent as UTF-8) goes with ``Content-Length``; ``headers`` are added as given;
    the connection is closed after it.
    """

    status: int = 200
    body: bytes = attrs.field(default=b"", converter=_body)
    headers: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_headers)
    content_type: str = "text/plain; charset=utf-8"

    @classmethod
    def redirect(cls, location: str, status: int = 307) -> HTTPResponse:
        """A redirect to ``location``."""
        return cls(status, b"", [("Location", location)])

    @classmethod
    def html(cls, body: str | bytes, status: int = 200) -> HTTPResponse:
        """An HTML page."""
        return cls(status, _body(body), (), "text/html; charset=utf-8")
