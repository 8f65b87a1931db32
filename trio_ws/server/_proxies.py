"""What trusted proxies say of the original request: the client's address, the scheme and the host
(``Forwarded``, RFC 7239, or ``X-Forwarded-For`` / ``-Proto`` / ``-Host``)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from ..connection import Request
from ..protocol import Headers

__all__ = ["Network", "apply_forwarded", "client_address", "forwarded", "parse_networks"]

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
            hop[name] = value
    return hops


def _hops(headers: Headers) -> list[Hop]:
    """``Forwarded`` when it names a client (or when there is nothing else), else ``X-Forwarded-*``."""
    hops = _rfc7239(headers)
    if any("for" in hop for hop in hops):
        return hops
    return _x_forwarded(headers) or hops


def forwarded(
    peer: tuple[str, int] | None, headers: Headers, trusted: Sequence[Network]
) -> tuple[tuple[str, int] | None, str | None, str | None]:
    """``(client, scheme, host)``: what the proxies say, if the peer is a trusted proxy.

    The client is the nearest address in the chain that is not itself a trusted proxy (port 0:
    unknown; the oldest address if all are trusted; the peer if none is given). The scheme (``ws`` or
    ``wss``) and the host come from that same hop (or, without any address, from the nearest
    proxy's); ``None`` when not given or not valid. From an untrusted peer: ``(peer, None, None)``.
    """
    if peer is None or not trusted or not _in(peer[0], trusted):
        return peer, None, None
    hops = _hops(headers)
    named = [index for index, hop in enumerate(hops) if "for" in hop]
    if named:
        chosen = next((i for i in reversed(named) if not _in(hops[i]["for"], trusted)), named[0])
        hop = hops[chosen]
        client: tuple[str, int] | None = (hop["for"], 0)
    elif hops:
        hop, client = hops[-1], peer
    else:
        return peer, None, None
    scheme = _SCHEMES.get(hop.get("proto", "").lower())
    host = hop.get("host")
    if host is not None and (len(host) > 255 or not _HOST.fullmatch(host)):
        host = None
    return client, scheme, host


def client_address(
    peer: tuple[str, int] | None, headers: Headers, trusted: Sequence[Network]
) -> tuple[str, int] | None:
    """The client's address: the peer's, unless the peer is a trusted proxy; then the nearest address
    in ``Forwarded`` / ``X-Forwarded-For`` that is not itself a trusted proxy (port 0: unknown)."""
    return forwarded(peer, headers, trusted)[0]


def apply_forwarded(request: Request, trusted: Sequence[Network]) -> None:
    """Set ``request``'s client, scheme and host to what trusted proxies say (see :func:`forwarded`)."""
    client, scheme, host = forwarded(request.client, request.headers, trusted)
    request.client = client
    if scheme is not None:
        request.scheme = scheme
    if host is not None:
        request.host = host
