"""HTTP/1.1 head syntax and immutable, case-insensitive, multi-valued HTTP headers.

The line checks here take time linear in their input: they find the separators with bytes methods
and search each part for one byte outside its character class (a scan: there is nothing to
backtrack), so a hostile head costs no more than its length.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Final, final

from ._errors import HandshakeError

__all__ = ["Headers", "check_header", "header_tokens"]

_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
_TOKEN = re.compile(rb"[" + _TCHAR + rb"]+")
_NOT_TCHAR = re.compile(rb"[^" + _TCHAR + rb"]")
#: ASCII whitespace (``\s`` in a bytes pattern): a request-target may hold any other byte.
_WHITESPACE = re.compile(rb"[ \t\n\r\x0b\x0c]")
#: Control characters but HTAB: never in a header value or a reason phrase.
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# One whole line in one pass, for the usual case (each a run of one character class, then another
# whose first byte the first cannot hold: no backtracking, linear time).
_FIELD = re.compile(rb"([" + _TCHAR + rb"]+):([^\x00-\x08\x0a-\x1f\x7f]*)")
_PLAIN_REQUEST = re.compile(rb"([" + _TCHAR + rb"]+) ([\x21-\x7e\x80-\xff]+) (HTTP/[0-9]\.[0-9])")

#: The kinds of line :func:`check_line` knows.
REQUEST_LINE: Final = 0  #: ``method SP target SP HTTP/d.d`` (RFC 9112 §3)
STATUS_LINE: Final = 1  #: ``HTTP/1.1 SP ddd [SP reason]`` (RFC 9112 §4), HTTP/1.1 only
FIELD_LINE: Final = 2  #: ``name ":" OWS value OWS`` (RFC 9112 §5), no obs-fold

# The fixed parts: each "0" of a template stands for any digit, and no other digit appears in it.
_ANY_DIGIT = bytes.maketrans(b"123456789", b"000000000")
_VERSION = b"HTTP/0.0"
_HTTP11 = b"HTTP/1.1 "
_STATUS_CODE = b"000 "


def _fits(part: bytes, template: bytes) -> bool:
    """Whether ``part`` begins ``template``."""
    return part.translate(_ANY_DIGIT) == template[: len(part)]


def check_line(
    kind: int, buf: bytes | bytearray, start: int, end: int, checked: int, seps: list[int]
) -> bool:
    """Whether ``buf[start:end]`` (a line without its CRLF, or the beginning of one) can still be, or
    begin, a valid line of ``kind``.

    Incremental: ``buf[start:checked]`` passed before, with the positions of its separators (the
    spaces of a request line, the colon of a field line) in ``seps``; only ``buf[checked:end]`` is
    looked at (and the at most 13 bytes of a fixed part), and the separators found are added to
    ``seps``. (:func:`parse_line` reads a whole line.)
    """
    if kind == STATUS_LINE:
        fixed = bytes(buf[start : min(end, start + 13)])
        return (
            fixed[:9] == _HTTP11[: len(fixed)]
            and _fits(fixed[9:], _STATUS_CODE)
            and _BAD_VALUE.search(buf, max(checked, start + 13), end) is None
        )
    sep, count = (b":", 1) if kind == FIELD_LINE else (b" ", 2)
    pos = checked
    while len(seps) < count:
        found = buf.find(sep, pos, end)
        stop = end if found < 0 else found
        if (_WHITESPACE if seps else _NOT_TCHAR).search(buf, pos, stop) is not None:
            return False
        if found < 0:
            return True
        if found == (seps[-1] + 1 if seps else start):
            return False  # an empty method, target or field name
        seps.append(found)
        pos = found + 1
    if kind == FIELD_LINE:
        return _BAD_VALUE.search(buf, pos, end) is None
    return _fits(bytes(buf[seps[1] + 1 : end]), _VERSION)  # (short: it fails past 8 bytes)


def parse_line(kind: int, line: bytes) -> tuple[bytes, ...] | None:
    """The parts of one whole line (without its CRLF), or ``None`` if it is not a valid ``kind``
    line: ``(method, target, b"d.d")`` of a request line, ``(status, reason)`` of a status line,
    ``(name, value)`` of a field line, the value without the whitespace around it."""
    seps: list[int] = []
    if not check_line(kind, line, 0, len(line), 0, seps):
        return None
    if kind == STATUS_LINE:
        return (line[9:12], line[13:]) if len(line) >= 12 else None
    if kind == FIELD_LINE:
        return (line[: seps[0]], line[seps[0] + 1 :].strip(b" \t")) if seps else None
    if len(seps) < 2 or len(line) - seps[1] - 1 != len(_VERSION):
        return None
    return line[: seps[0]], line[seps[0] + 1 : seps[1]], line[-3:]


def parse_header_line(line: bytes) -> tuple[bytes, bytes] | None:
    """``(name, value)`` of one header line, or ``None`` if it is malformed: what :func:`parse_line`
    gives for a ``FIELD_LINE``, faster (every header line received is read by it)."""
    m = _FIELD.fullmatch(line)
    return None if m is None else (m[1], m[2].strip(b" \t"))


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
    def from_parsed(cls, block: bytes, raw: tuple[tuple[bytes, bytes], ...]) -> Headers:
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
                pair = parse_header_line(line)
                assert pair is not None  # (checked by the parser already)
                pairs.append(pair)
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
    def is_compact(self) -> bool:
        """Whether only the bytes received are held now (no pairs, no index; see :meth:`compact`)."""
        return self._raw is None and self._index is None

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


class HeadParser:
    """An HTTP/1.1 head (a request or a status line, then header lines) in any chunking, refused as
    soon as its bytes cannot begin a valid one: each line is read when its CRLF arrives, and the
    line still arriving is checked as far as it came, each byte once, so the work is linear however
    the bytes are split.

    ``max_size`` bounds the head, ``max_headers`` its header lines (431 beyond either).
    """

    first_kind: int = REQUEST_LINE
    first_name = "request line"

    def __init__(self, max_size: int, max_headers: int) -> None:
        self.max_size = max_size
        self.max_headers = max_headers
        #: Bytes that came after the head (the first frames, possibly): hand them to the connection.
        self.trailing = b""
        self._done = False
        self._buf = bytearray()
        self._line = self._checked = 0  # where the line being received starts; how far it was checked
        self._seps: list[int] = []  # its separators found so far (check_line)
        self._first: tuple[bytes, ...] | None = None
        self._fields: list[tuple[bytes, bytes]] = []
        self._block = 0  # where the header lines start in _buf

    def _error(self, status: int, reason: str) -> HandshakeError:
        return HandshakeError(status, reason)

    def _malformed(self) -> HandshakeError:
        return self._error(400, f"malformed {self.first_name if self._first is None else 'header line'}")

    def feed(self, data: bytes | bytearray) -> tuple[tuple[bytes, ...], Headers] | None:
        """The first line's parts (:func:`parse_line`) and the headers once the head is complete,
        else ``None``; once it was complete, more bytes add to :attr:`trailing`. Raises
        :class:`HandshakeError` (400 malformed, 431 too large)."""
        if self._done:
            self.trailing += data
            return None
        if not self._buf and isinstance(data, bytes):  # usually the whole head comes in one read
            end = data.find(b"\r\n\r\n")
            if end >= 0 and end + 4 <= self.max_size:
                lines = data[:end].split(b"\r\n")
                if len(lines) - 1 > self.max_headers:
                    raise self._error(431, "too many request headers")
                first: tuple[bytes, ...] | None = None
                if self.first_kind == REQUEST_LINE and (m := _PLAIN_REQUEST.fullmatch(lines[0])):
                    first = (m[1], m[2], m[3][5:])  # a plain request line, in one pass
                if first is None and (first := parse_line(self.first_kind, lines[0])) is None:
                    raise self._malformed()
                headers = self._headers(lines[1:], data[len(lines[0]) + 2 : end])
                self.trailing = data[end + 4 :]
                self._done = True
                return first, headers
        buf = self._buf
        search = max(len(buf), self._line)  # (what came before holds no LF after the line's start)
        buf += data
        while (lf := buf.find(b"\n", search)) >= 0:
            start, end = self._line, lf - 1
            if lf == start or buf[end] != 0x0D:
                raise self._error(400, "line ended by a bare LF")
            if lf >= self.max_size:
                raise self._error(431, "request header block too large")
            if end == start:  # the empty line: the head is complete
                if self._first is None:
                    raise self._malformed()
                block = bytes(buf[self._block : max(self._block, start - 2)])
                head = self._first, Headers.from_parsed(block, tuple(self._fields))
                self.trailing = bytes(buf[lf + 1 :])
                self._done = True
                self._buf, self._fields = bytearray(), []
                return head
            line = bytes(buf[start:end])  # (read whole as in one read: the tail check is only a check)
            if self._first is None:
                first = parse_line(self.first_kind, line)
                if first is None:
                    raise self._malformed()
                self._first, self._block = first, lf + 1
            else:
                pair = parse_header_line(line)
                if pair is None:
                    raise self._malformed()
                self._fields.append(pair)
                if len(self._fields) > self.max_headers:
                    raise self._error(431, "too many request headers")
            self._line = self._checked = search = lf + 1
            self._seps = []
        end = len(buf)
        if end > self._line and buf[end - 1] == 0x0D:
            end -= 1  # (perhaps the start of a CRLF)
        kind = self.first_kind if self._first is None else FIELD_LINE
        if not check_line(kind, buf, self._line, end, self._checked, self._seps):
            raise self._malformed()
        self._checked = end
        if len(buf) > self.max_size:
            raise self._error(431, "request header block too large")
        return None

    def _headers(self, lines: list[bytes], block: bytes) -> Headers:
        items: list[tuple[bytes, bytes]] = []
        for line in lines:
            pair = parse_header_line(line)
            if pair is None:
                raise self._error(400, "malformed header line")
            items.append(pair)
        return Headers.from_parsed(block, tuple(items))
