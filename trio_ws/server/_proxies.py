"""The client's address behind trusted proxies (``Forwarded`` / ``X-Forwarded-For``)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from ..protocol import Headers

__all__ = ["Network", "client_address", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Sequence[str]) -> tuple[Network, ...]:
    """``"10.0.0.1"`` or ``"10.0.0.0/8"`` entries as networks (``ValueError`` for a bad one)."""
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _in(host: str, networks: Sequence[Network]) -> bool:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return any(address in network for network in networks)


def _forwarded_for(headers: Headers) -> list[str]:
    """The client addresses a proxy chain added, oldest first: ``Forwarded: for=`` or, without it,
    ``X-Forwarded-For``."""
    out: list[str] = []
    for value in headers.getlist("forwarded"):
        for element in value.split(","):
            for pair in element.split(";"):
                name, _, addr = pair.strip().partition("=")
                if name.lower() == "for" and addr:
                    addr = addr.strip('"')
                    if addr.startswith("["):  # "[2001:db8::1]:4711"
                        addr = addr[1 : addr.find("]")] if "]" in addr else addr[1:]
                    elif addr.count(":") == 1:  # "192.0.2.1:4711"
                        addr = addr.partition(":")[0]
                    out.append(addr)
    if out:
        return out
    for value in headers.getlist("x-forwarded-for"):
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return out


def client_address(
    peer: tuple[str, int] | None, headers: Headers, trusted: Sequence[Network]
) -> tuple[str, int] | None:
    """The client's address: the peer's, unless the peer is a trusted proxy; then the nearest address
    in ``Forwarded`` / ``X-Forwarded-For`` that is not itself a trusted proxy (port 0: unknown)."""
    if peer is None or not trusted or not _in(peer[0], trusted):
        return peer
    chain = _forwarded_for(headers)
    for host in reversed(chain):
        if not _in(host, trusted):
            return (host, 0)
    return (chain[0], 0) if chain else peer
