"""Immutable, case-insensitive, multi-valued HTTP headers."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import final

__all__ = ["Headers", "check_header", "header_tokens"]

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
#: One header line: a token name, and the value without the optional whitespace around it; no
#: control characters but HTAB (the parsers refuse a line that does not match).
HEADER_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*?)[ \t]*")


def _b(s: str | bytes) -> bytes:
    return s.encode("latin-1") if isinstance(s, str) else s


def check_header(name: str | bytes, value: str | bytes) -> tuple[bytes, bytes]:
    """Return ``(name, value)`` as bytes, refusing a name that is not an HTTP token or a value with
    CR, LF or other control characters (header injection). Raises :class:`ValueError`."""
    try:
        bname, bvalue = _b(name), _b(value)
    except UnicodeEncodeError:
        raise ValueError(f"header {name!r}: only Latin-1 text can be sent") from None
    if not _TOKEN.fullmatch(bname):
        raise ValueError(f"invalid header name {name!r}")
    if _BAD_VALUE.search(bvalue):
        raise ValueError(f"header {name!r}: value has CR, LF or another control character")
    return bname, bvalue


@final
class Headers(Mapping[str, str]):
    """Request or response headers, as received: immutable, names case-insensitive, each name may
    repeat. ``headers["x"]`` is the first value, ``getlist("x")`` all of them in order, ``raw`` the
    ``(name, value)`` byte pairs as they came on the wire.

    Headers that came off the wire keep their block of bytes; the pairs and the case-insensitive
    index are made from it when needed and may be dropped again (:meth:`compact`), so that an idle
    connection holds its headers as one ``bytes`` object.
    """

    __slots__ = ("_block", "_index", "_raw")

    def __init__(self, raw: Iterable[tuple[str | bytes, str | bytes]] = ()) -> None:
        self._raw: tuple[tuple[bytes, bytes], ...] | None = tuple((_b(k), _b(v)) for k, v in raw)
        self._block: bytes | None = None
        self._index: dict[str, list[str]] | None = None

    @classmethod
    def _parsed(cls, block: bytes, raw: tuple[tuple[bytes, bytes], ...]) -> Headers:
        """Headers that a parser has checked: the header lines as received (CRLF-separated) and
        their pairs."""
        headers = cls.__new__(cls)
        headers._block = block
        headers._raw = raw
        headers._index = None
        return headers

    @property
    def _pairs(self) -> tuple[tuple[bytes, bytes], ...]:
        raw = self._raw
        if raw is None:
            assert self._block is not None
            pairs = []
            for line in self._block.split(b"\r\n") if self._block else ():
                m = HEADER_LINE.fullmatch(line)
                assert m is not None  # (checked by the parser already)
                pairs.append((m[1], m[2]))
            raw = self._raw = tuple(pairs)
        return raw

    @property
    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = self._index = {}
            for k, v in self._pairs:
                index.setdefault(k.decode("latin-1").lower(), []).append(v.decode("latin-1"))
        return index

    def compact(self) -> None:
        """Drop what can be made again from the bytes received (the pairs, the lookup index): for
        headers kept long."""
        self._index = None
        if self._block is not None:
            self._raw = None

    @property
    def raw(self) -> tuple[tuple[bytes, bytes], ...]:
        """The headers as ``(name, value)`` byte pairs, in order, names in their original case."""
        return self._pairs

    def __getitem__(self, name: str) -> str:
        return self._lookup[name.lower()][0]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._lookup

    def __iter__(self) -> Iterator[str]:
        return iter(self._lookup)

    def __len__(self) -> int:
        return len(self._lookup)

    def getlist(self, name: str) -> list[str]:
        """Every value of ``name``, in order; ``[]`` when absent."""
        return list(self._lookup.get(name.lower(), ()))

    def multi_items(self) -> list[tuple[str, str]]:
        """Every ``(lower-case name, value)`` pair, in order, repeats included."""
        return [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in self._pairs]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return sorted(self.multi_items()) == sorted(other.multi_items())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.multi_items())))

    def __repr__(self) -> str:
        return f"Headers({self.multi_items()!r})"


def header_tokens(headers: Headers, name: str) -> list[str]:
    """The comma-separated elements of every ``name`` header, stripped, empty ones dropped (RFC 9110
    §5.6.1)."""
    out: list[str] = []
    for value in headers.getlist(name):
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return out


def is_token(value: str) -> bool:
    return _TOKEN.fullmatch(value.encode("latin-1", "replace")) is not None
