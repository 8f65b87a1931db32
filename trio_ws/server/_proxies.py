"""What trusted proxies say of the original request: the client's address, the scheme and the host
(``Forwarded``, RFC 7239, or ``X-Forwarded-For`` / ``-Proto`` / ``-Host``)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from ..connection import Request
from ..protocol import Headers

__all__ = ["PROXY_HEADERS", "Network", "apply_forwarded", "client_address", "forwarded", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: ``X-Forwarded-Proto`` / ``proto=`` values -> the WebSocket scheme; anything else is ignored.
_SCHEMES = {"https": "wss", "wss": "wss", "http": "ws", "ws": "ws"}
#: A host name, an IPv4 address or a bracketed IPv6 address, with an optional port: nothing that
#: could change the rest of a URL (no ``/``, ``?``, ``#``, ``@``, spaces). No backtracking.
_HOST = re.compile(r"(?:[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")

Hop = dict[str, str]
"""One proxy hop: ``for`` (who connected to that proxy), ``proto``, ``host``, as far as given."""


def parse_networks(entries: Sequence[str]) -> tuple[Network, ...]:
    """``"10.0.0.1"`` or ``"10.0.0.0/8"`` entries as networks (``ValueError`` for a bad one)."""
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _in(host: str, networks: Sequence[Network]) -> bool:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return any(address in network for network in networks)


def _node(addr: str) -> str:
    """A ``for=`` value without quotes, brackets or port."""
    addr = addr.strip('"')
    if addr.startswith("["):  # "[2001:db8::1]:4711"
        return addr[1 : addr.find("]")] if "]" in addr else addr[1:]
    if addr.count(":") == 1:  # "192.0.2.1:4711"
        return addr.partition(":")[0]
    return addr


def _rfc7239(headers: Headers) -> list[Hop]:
    """``Forwarded`` elements, oldest first, with their ``for``, ``proto`` and ``host``."""
    hops: list[Hop] = []
    for value in headers.getlist("forwarded"):
        for element in value.split(","):
            hop: Hop = {}
            for pair in element.split(";"):
                name, _, param = pair.strip().partition("=")
                name, param = name.strip().lower(), param.strip()
                if name in ("for", "proto", "host") and param and name not in hop:
                    hop[name] = _node(param) if name == "for" else param.strip('"')
            if hop:
                hops.append(hop)
    return hops


def _listed(headers: Headers, name: str) -> list[str]:
    return [part.strip() for value in headers.getlist(name) for part in value.split(",") if part.strip()]


def _x_forwarded(headers: Headers) -> list[Hop]:
    """``X-Forwarded-For`` / ``-Proto`` / ``-Host`` as hops, oldest first: each proxy appends one
    entry to each list, so the lists are aligned from their ends."""
    lists = {name: _listed(headers, f"x-forwarded-{name}") for name in ("for", "proto", "host")}
    count = max(len(values) for values in lists.values())
    hops: list[Hop] = [{} for _ in range(count)]
    for name, values in lists.items():
        for hop, value in zip(hops[count - len(values) :], values, strict=True):
            hop[name] = _node(value) if name == "for" else value  # ("203.0.113.9:5555": no port)
    return hops


#: The header families a proxy may speak: ``X-Forwarded-For`` / ``-Proto`` / ``-Host``, or
#: ``Forwarded`` (RFC 7239). Only the one the proxies write is read: a client can write the other.
PROXY_HEADERS = ("x-forwarded", "forwarded")


def forwarded(
    peer: tuple[str, int] | None,
    headers: Headers,
    trusted: Sequence[Network],
    proxy_headers: str = "x-forwarded",
) -> tuple[tuple[str, int] | None, str | None, str | None]:
    """``(client, scheme, host)``: what the proxies say, if the peer is a trusted proxy.

    ``proxy_headers`` names the one header family read (:data:`PROXY_HEADERS`). The hops are walked
    from the newest (the one the peer added): the client is the first address that is not a trusted
    proxy (port 0: unknown; the oldest address if all are trusted). A hop that names no address
    ends the walk: the nearest address known so far (the peer's, for the newest hop) is the client.
    The scheme (``ws`` or ``wss``) and the host come from the hop where the walk ended; ``None``
    when not given or not valid. From an untrusted peer: ``(peer, None, None)``.
    """
    if peer is None or not trusted or not _in(peer[0], trusted):
        return peer, None, None
    hops = _rfc7239(headers) if proxy_headers == "forwarded" else _x_forwarded(headers)
    if not hops:
        return peer, None, None
    client: tuple[str, int] | None = peer
    hop = hops[-1]
    for hop in reversed(hops):
        address = hop.get("for")
        if address is None:
            break  # who connected to that proxy is not said: what is older cannot be trusted
        client = (address, 0)
        if not _in(address, trusted):
            break
    scheme = _SCHEMES.get(hop.get("proto", "").lower())
    host = hop.get("host")
    if host is not None and (len(host) > 255 or not _HOST.fullmatch(host)):
        host = None
    return client, scheme, host


def client_address(
    peer: tuple[str, int] | None,
    headers: Headers,
    trusted: Sequence[Network],
    proxy_headers: str = "x-forwarded",
) -> tuple[str, int] | None:
    """The client's address: the peer's, unless the peer is a trusted proxy; then the nearest address
    the proxies name that is not itself a trusted proxy (port 0: unknown; see :func:`forwarded`)."""
    return forwarded(peer, headers, trusted, proxy_headers)[0]


def apply_forwarded(request: Request, trusted: Sequence[Network], proxy_headers: str = "x-forwarded") -> None:
    """Set ``request``'s client, scheme and host to what trusted proxies say (see :func:`forwarded`)."""
    client, scheme, host = forwarded(request.client, request.headers, trusted, proxy_headers)
    request.client = client
    if scheme is not None:
        request.scheme = scheme
    if host is not None:
        request.host = host
