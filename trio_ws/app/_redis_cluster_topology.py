"""Where a room's messages go in a Redis Cluster: the slot of its channel (:func:`key_slot`), which
primary serves which slot (:class:`ClusterTopology`, from ``CLUSTER SHARDS``), and the small helpers
of :class:`RedisClusterBackend` that know no connection: node URLs and startup nodes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

__all__ = [
    "SLOTS",
    "Address",
    "ClusterTopology",
    "channel_name",
    "key_slot",
    "node_url",
    "parse_address",
    "room_name",
]

SLOTS = 16384  #: hash slots of a Redis Cluster

Address = tuple[str, int]


def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_CRC16 = _crc16_table()


def key_slot(key: bytes) -> int:
    """The cluster slot of ``key``: CRC16 (XMODEM) of its hash tag (the part between the first
    ``{`` and the next ``}``, if not empty) or of the whole key, modulo 16384."""
    start = key.find(b"{")
    if start != -1:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    crc = 0
    for byte in key:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[(crc >> 8) ^ byte]
    return crc % SLOTS


def channel_name(prefix: str, room: str) -> bytes:
    """A room's shard channel, ``{<prefix><room>}``: its hash tag is the whole name, so the room's
    other keys tagged ``{<prefix><room>}`` (its history) live in the same slot."""
    return ("{" + prefix + room + "}").encode()


def room_name(prefix: str, channel: bytes) -> str:
    """The room of a channel :func:`channel_name` made."""
    return channel[len(prefix.encode()) + 1 : -1].decode("utf-8", "replace")


@attrs.frozen
class ClusterTopology:
    """Which primary serves each slot (``None``: no primary that answers), and every node seen."""

    owners: tuple[Address | None, ...] = (None,) * SLOTS
    nodes: frozenset[Address] = frozenset()
    complete: bool = False  #: every slot has a primary

    @property
    def primaries(self) -> set[Address]:
        return {owner for owner in self.owners if owner is not None}

    @classmethod
    def from_shards(cls, shards: Iterable[Mapping[Any, Any]], *, tls: bool = False) -> ClusterTopology:
        """From the answer of ``CLUSTER SHARDS`` (Redis 7): a shard's slots belong to its primary
        if that one is online; ``tls``: the nodes' TLS ports."""
        port_keys = (b"tls-port", b"port") if tls else (b"port", b"tls-port")
        owners: list[Address | None] = [None] * SLOTS
        nodes = set()
        for shard in shards:
            primary = None
            for node in shard[b"nodes"]:
                host = bytes(node.get(b"endpoint") or b"?")
                if host in (b"", b"?"):
                    host = bytes(node[b"ip"])
                port = next(node[key] for key in port_keys if node.get(key))
                address = (host.decode(), int(port))
                nodes.add(address)
                if node[b"role"] == b"master" and node.get(b"health", b"online") == b"online":
                    primary = address
            slots = [int(value) for value in shard[b"slots"]]
            for low, high in zip(slots[::2], slots[1::2], strict=True):
                owners[low : high + 1] = [primary] * (high - low + 1)
        return cls(tuple(owners), frozenset(nodes), None not in owners)


def node_url(url: str, address: Address) -> str:
    """``url`` (scheme, credentials, options) for the node at ``address``."""
    parts = urlsplit(url)
    host = f"[{address[0]}]" if ":" in address[0] else address[0]
    credentials = parts.netloc.rpartition("@")[0]
    return f"{parts.scheme}://{credentials + '@' if credentials else ''}{host}:{address[1]}" + (
        f"?{parts.query}" if parts.query else ""
    )


def parse_address(node: str) -> Address:
    """``"host:port"`` (``"[::1]:7000"``), or ``ValueError``."""
    host, _, port = node.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"a startup node is 'host:port', not {node!r}")
    return host.strip("[]"), int(port)
