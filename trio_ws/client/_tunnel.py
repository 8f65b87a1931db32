"""Connecting through a proxy: HTTP ``CONNECT``, SOCKS4 and SOCKS5, by the ``python-socks`` package.

The proxy opens a TCP tunnel to the target; TLS (``wss://``) and the opening handshake then run
through it as over a direct connection.
"""

from __future__ import annotations

import math
from urllib.parse import unquote, urlsplit

import attrs
import trio

__all__ = ["ProxyError", "ProxyURL", "open_tunnel"]


class ProxyError(Exception):
    """The proxy refused to open the tunnel to the target: an HTTP proxy answered ``CONNECT`` with
    another status than 200 (``status``: 407 when it wants credentials, 403, 502 …), a SOCKS proxy
    refused the credentials or the connection (``status`` is ``None``; ``reply`` is the SOCKS reply
    code, when there was one), or the proxy closed the connection or answered something else.

    A proxy that cannot be reached at all raises :class:`OSError` instead, as a server would."""

    def __init__(self, message: str, status: int | None = None, reply: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reply = reply


#: Scheme -> (python-socks proxy type name, whether the proxy resolves the target's name).
_SCHEMES = {
    "http": ("HTTP", True),
    "socks5": ("SOCKS5", False),
    "socks5h": ("SOCKS5", True),
    "socks4": ("SOCKS4", False),
    "socks4a": ("SOCKS4", True),
}
_DEFAULT_PORTS = {"http": 80}


@attrs.frozen
class ProxyURL:
    """A parsed proxy URL: ``http://``, ``socks5://``, ``socks5h://`` (the proxy resolves the
    target's name), ``socks4://`` or ``socks4a://``, with optional ``user:password@``."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> ProxyURL:
        """Parse ``url``; :class:`ValueError` for an unsupported scheme or a missing host."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _SCHEMES:
            supported = ", ".join(f"{s}://" for s in _SCHEMES)
            raise ValueError(f"unsupported proxy URL {_redact(url)!r}: the scheme must be one of {supported}")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"invalid port in proxy URL {_redact(url)!r}") from None
        if not parts.hostname:
            raise ValueError(f"no host in proxy URL {_redact(url)!r}")
        username = None if parts.username is None else unquote(parts.username)
        password = None if parts.password is None else unquote(parts.password)
        return cls(scheme, parts.hostname, port or _DEFAULT_PORTS.get(scheme, 1080), username, password)


def _redact(url: str) -> str:
    """``url`` without its password (for error messages)."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostpart = rest.partition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.partition(':')[0]}:***@{hostpart}"


async def open_tunnel(
    proxy: str | ProxyURL, host: str, port: int, *, local_address: str | None = None
) -> trio.SocketStream:
    """A TCP stream to ``host:port`` through ``proxy`` (a URL or a :class:`ProxyURL`).

    Raises :class:`ProxyError` when the proxy refuses, :class:`OSError` when it cannot be reached,
    :class:`ValueError` for a URL that is not a supported proxy URL, :class:`ImportError` without
    the ``python-socks`` package (the ``socks`` extra).
    """
    url = proxy if isinstance(proxy, ProxyURL) else ProxyURL.parse(proxy)
    try:
        import python_socks
        from python_socks.async_.trio import Proxy
    except ImportError:  # pragma: no cover - the extra is installed for the tests
        raise ImportError("proxy= needs the python-socks package: pip install 'trio-ws[socks]'") from None
    kind, rdns = _SCHEMES[url.scheme]
    client = Proxy(python_socks.ProxyType[kind], url.host, url.port, url.username, url.password, rdns=rdns)
    local = None if local_address is None else (local_address, 0)
    try:
        # The caller bounds the whole opening (open_timeout): python-socks's own limit is off.
        sock = await client.connect(host, port, timeout=math.inf, local_addr=local)
    except python_socks.ProxyConnectionError as exc:
        raise OSError(exc.errno, exc.strerror) from None  # ConnectionRefusedError …
    except python_socks.ProxyError as exc:
        code = exc.error_code
        http = url.scheme == "http"
        raise ProxyError(
            f"{url.scheme} proxy {url.host}:{url.port} refused the tunnel to {host}:{port}: {exc}",
            code if http else None,
            None if http else code,
        ) from None
    return trio.SocketStream(sock)
