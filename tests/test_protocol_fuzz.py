"""Fuzzing the sans-I/O core: the handshake parsers, extension negotiation and the frame parser.

One invariant, for random and mutated input fed whole, byte by byte and in random chunks: the bytes
either parse or give our own protocol error (a HandshakeError from the handshake parsers; for
``Connection.receive_data`` no exception at all, the violation recorded in ``conn.failure``), never
another exception, never a hang. Besides: every chunking gives the same result; the extension
parser agrees with the regular expression it replaced (on inputs short enough for that to be
quick); and time per byte stays flat (twice the input, at most about twice the time).
"""

from __future__ import annotations

import contextlib
import functools
import random
import re
import signal
from collections.abc import Callable, Iterator
from types import FrameType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hardening_handshake import LINEAR_AT_MOST, growth

from trio_ws.protocol import (
    Connection,
    DeflateOptions,
    HandshakeError,
    Headers,
    PerMessageDeflate,
    ProtocolError,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
    Role,
    TextMessage,
    accept_deflate,
    build_request,
    build_response,
    deflate_offer,
    encode_frame,
    error_response,
    negotiate_deflate,
    parse_extensions,
    validate_request,
    validate_response,
)

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"abcd"


@contextlib.contextmanager
def no_hang(seconds: float = 5.0) -> Iterator[None]:
    """Fail the block, rather than wait for ever, if it runs longer than ``seconds``."""

    def expired(signum: int, frame: FrameType | None) -> None:
        raise AssertionError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------ inputs

REQUESTS = [
    build_request("h:1", "/chat?x=1", subprotocols=["a", "b"], extensions=deflate_offer(DeflateOptions()))[0],
    b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n"
    b"Sec-WebSocket-Key: " + KEY.encode() + b"\r\nSec-WebSocket-Version: 13\r\nX-Tabs:\t a \t\r\nEmpty:\r\n"
    b'Sec-WebSocket-Extensions: x-foo; a="1"; b = 2 , permessage-deflate;client_max_window_bits\r\n\r\n',
    b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n\x81\x80abcd",
]
RESPONSES = [
    build_response(KEY, subprotocol="a", extensions="permessage-deflate; server_max_window_bits=10"),
    error_response(403, headers=[("Retry-After", "1")]),
    b"HTTP/1.1 101\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81\x00",
]
sizes = st.lists(st.integers(1, 40), max_size=6)  # (of chunks)
#: Bytes that matter to an HTTP head or a frame header.
SPICE = b"\x00\t\n\r \"',;:=\\/\x0b\x0c\x7f\x80\x85\xa0\xffaZ09-HTP.~\x81\x88\x89\x8a\xfe\x7e\x7f"


@st.composite
def mutated(draw: st.DrawFn, samples: list[bytes]) -> bytes:
    """One of ``samples`` with a few bytes replaced, inserted, deleted or repeated, its line ends
    made bare LFs, or cut short."""
    data = bytearray(draw(st.sampled_from(samples)))
    for _ in range(draw(st.integers(0, 4))):
        op, i = draw(st.integers(0, 5)), draw(st.integers(0, len(data)))
        if op == 0 and i < len(data):
            data[i] = draw(st.sampled_from(SPICE) | st.integers(0, 255))
        elif op == 1:
            data[i:i] = draw(st.binary(max_size=6) | st.lists(st.sampled_from(SPICE), max_size=6).map(bytes))
        elif op == 2:
            del data[i : i + draw(st.integers(1, 12))]
        elif op == 3:
            data[i:i] = data[i : i + draw(st.integers(1, 40))]
        elif op == 4:
            data = data.replace(b"\r\n", b"\n", draw(st.integers(1, 3)))
        else:
            del data[i:]
    return bytes(data)


def chunkings(data: bytes, sizes: list[int]) -> list[list[bytes]]:
    """``data`` whole, byte by byte, and cut after each of ``sizes`` in turn."""
    cut: list[bytes] = []
    pos = 0
    while pos < len(data):
        step = sizes[len(cut) % len(sizes)] if sizes else len(data)
        cut.append(data[pos : pos + step])
        pos += step
    return [[data] if data else [], [data[i : i + 1] for i in range(len(data))], cut]


# ------------------------------------------------------------------ extensions

OLD_EXT_PARAM = re.compile(r'\s*([^\s=;,"]+)\s*(?:=\s*(?:([^\s;,"]+)|"([^"\\]*)"))?\s*')
OLD_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def old_parse_extensions(headers: Headers) -> list[tuple[str, list[tuple[str, str | None]]]]:
    def is_token(value: str) -> bool:
        return OLD_TOKEN.fullmatch(value.encode("latin-1", "replace")) is not None

    out: list[tuple[str, list[tuple[str, str | None]]]] = []
    for element in (e.strip() for v in headers.getlist("sec-websocket-extensions") for e in v.split(",")):
        if not element:
            continue
        name, *params = element.split(";")
        if not is_token(name.strip()):
            raise HandshakeError(400, "invalid extension")
        parsed: list[tuple[str, str | None]] = []
        for param in params:
            m = OLD_EXT_PARAM.fullmatch(param)
            value = None if m is None else m[2] if m[2] is not None else m[3]
            if m is None or not is_token(m[1]) or (value is not None and not is_token(value)):
                raise HandshakeError(400, "invalid parameter")
            parsed.append((m[1], value))
        out.append((name.strip(), parsed))
    return out


NAMES = ["permessage-deflate", "x-foo", "client_max_window_bits", "server_max_window_bits", "8", "9", "15"]
MORE_NAMES = ["client_no_context_takeover", "server_no_context_takeover", "16", "08", '"10"']
EXTENSION_PIECES = [*';,= \t"\\\xa0\x85\x1c\xff\xe9a1', *NAMES, *MORE_NAMES]
extension_values = st.lists(st.sampled_from(EXTENSION_PIECES), max_size=14).map("".join)
bits = st.integers(8, 15)
deflate_options = st.builds(DeflateOptions, bits, bits, st.booleans(), st.booleans())


@settings(FUZZ, max_examples=300)
@given(st.lists(extension_values, min_size=1, max_size=3), deflate_options)
def test_extension_negotiation_agrees_and_raises_only_handshake_errors(
    values: list[str], options: DeflateOptions
) -> None:
    headers = Headers([("Sec-WebSocket-Extensions", v) for v in values])
    try:
        expected = old_parse_extensions(headers)
    except HandshakeError:
        with pytest.raises(HandshakeError) as info:
            parse_extensions(headers)
        assert info.value.status == 400
        return
    offers = parse_extensions(headers)
    assert offers == expected
    chosen = negotiate_deflate(offers, options)  # a malformed offer is declined, never an error
    if chosen is not None:
        assert 8 <= chosen.local_max_window_bits <= 15 and 8 <= chosen.remote_max_window_bits <= 15
        answer = parse_extensions(Headers([("Sec-WebSocket-Extensions", chosen.response_params())]), 0)
        assert answer[0][0] == "permessage-deflate"
    try:
        accept_deflate(offers, options)  # (as an answer: the client's check)
    except HandshakeError as exc:
        assert exc.status == 0


# ------------------------------------------------------------------ the handshake parsers

#: What feeding a head parser gave: the request or response and the bytes after it, or a status.
Outcome = tuple[RequestHead | ResponseHead | None, bytes, int | None]
ParserType = type[RequestParser] | type[ResponseParser]


def feed_head(parser_type: ParserType, chunks: list[bytes], max_size: int) -> Outcome:
    """Feed ``chunks``, then the end of the stream if the head is incomplete; other errors propagate."""
    parser = parser_type(max_size=max_size)
    result: RequestHead | ResponseHead | None = None
    try:
        for chunk in chunks:
            got = parser.receive_data(chunk)
            if got is not None:
                assert result is None  # complete once only
                result = got
        if result is None:
            parser.receive_data(b"")  # the end of the stream before the head: an error
            raise AssertionError("end of stream accepted")
    except HandshakeError as exc:
        assert result is None
        return None, b"", exc.status
    return result, parser.trailing, None


@pytest.mark.parametrize(
    ("parser_type", "samples", "max_size"),
    [(RequestParser, REQUESTS, 200), (RequestParser, REQUESTS, 16384), (ResponseParser, RESPONSES, 150)],
)
@FUZZ
@given(data=st.data())
def test_head_parsers_random_and_mutated_input(
    parser_type: ParserType, samples: list[bytes], max_size: int, data: st.DataObject
) -> None:
    wire = data.draw(mutated(samples) | st.binary(max_size=300))
    with no_hang():
        outcomes = [feed_head(parser_type, chunks, max_size) for chunks in chunkings(wire, data.draw(sizes))]
    result, trailing, _ = outcomes[0]  # (whole)
    for got, after, refused in outcomes:  # every chunking parses alike, or every one is refused
        assert refused is None or refused in ({0} if parser_type is ResponseParser else {400, 431})
        assert (got, after) == (result, trailing), outcomes
        assert got is None or (result is not None and got.headers.raw == result.headers.raw)
    if isinstance(result, RequestHead):
        try:
            assert len(validate_request(result)) == 24
        except HandshakeError as exc:
            assert exc.status in {400, 405, 426}
    elif result is not None:
        with contextlib.suppress(HandshakeError):
            validate_response(result, KEY, ["a"], ["permessage-deflate"])


# ------------------------------------------------------------------ the frame parser


def codec() -> PerMessageDeflate:
    return PerMessageDeflate(local_max_window_bits=10, remote_max_window_bits=10)


@st.composite
def frames(draw: st.DrawFn, receiver: Role, deflate: bool) -> bytes:
    """A valid stream of frames to ``receiver``: messages (some fragmented, some compressed), pings,
    pongs, perhaps a close frame."""
    ext = codec() if deflate else None

    def frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
        mask = draw(st.binary(min_size=4, max_size=4)) if receiver is Role.SERVER else None
        return encode_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=mask)

    out = b""
    for _ in range(draw(st.integers(1, 5))):
        opcode = draw(st.sampled_from([0x1, 0x2, 0x9, 0xA]))
        if opcode > 0x2:
            out += frame(opcode, draw(st.binary(max_size=20)))
            continue
        payload = draw(st.text(max_size=50)).encode() if opcode == 0x1 else draw(st.binary(max_size=120))
        rsv1 = ext is not None and draw(st.booleans())
        if ext is not None and rsv1:
            payload, rsv1 = ext.encode(payload)
        cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=3)))
        pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
        for i, piece in enumerate(pieces):
            out += frame(0x0 if i else opcode, piece, fin=i == len(pieces) - 1, rsv1=rsv1 and i == 0)
    if draw(st.booleans()):
        out += frame(0x8, b"\x03\xe8" + draw(st.text(max_size=10)).encode())
    return out


def run_connection(role: Role, deflate: bool, chunks: list[bytes]) -> tuple[list[object], bool]:
    """Feed ``chunks`` then the end of the stream; the events, and whether the peer failed it."""
    conn = Connection(role, max_message_size=200, extension=codec() if deflate else None)
    events: list[object] = []
    for chunk in chunks:
        failed, got = conn.failure is not None, conn.receive_data(chunk)
        assert not (failed and got)  # after a failure everything is discarded
        events += got
        assert isinstance(conn.data_to_send(), bytes)
    conn.receive_data(b"")
    if conn.failure is not None:
        assert isinstance(conn.failure, ProtocolError) and conn.failure.code in {1002, 1007, 1009}
    return events, conn.failure is not None


@pytest.mark.parametrize("deflate", [False, True])
@pytest.mark.parametrize("role", [Role.SERVER, Role.CLIENT])
@FUZZ
@given(data=st.data())
def test_connection_random_valid_and_mutated_frames(role: Role, deflate: bool, data: st.DataObject) -> None:
    valid = data.draw(frames(role, deflate))
    cuts = data.draw(sizes)
    for wire in (valid, data.draw(mutated([valid]) | st.binary(max_size=300))):
        with no_hang():
            outcomes = [run_connection(role, deflate, chunks) for chunks in chunkings(wire, cuts)]
        assert all(o == outcomes[0] for o in outcomes), outcomes  # the same in every chunking
        assert wire != valid or not outcomes[0][1]


@pytest.mark.parametrize("cut", range(1, 8))
def test_a_final_deflate_block_then_an_empty_octet_decodes_in_any_chunking(cut: int) -> None:
    """RFC 7692 §7.2.3.4: "Hello" in a block with BFINAL set, then one 0x00 octet; the end of the
    DEFLATE stream may arrive in a piece before the last (was: 1007 when it did)."""
    payload = bytes.fromhex("f348cdc9c9070000")
    whole = encode_frame(0x1, payload, rsv1=True, mask=MASK)
    fragments = encode_frame(0x1, payload[:cut], fin=False, rsv1=True, mask=MASK)
    fragments += encode_frame(0x0, payload[cut:], mask=MASK)
    for wire in (whole, fragments):
        for split in range(len(wire) + 1):
            conn = Connection(Role.SERVER, extension=PerMessageDeflate())
            events = [*conn.receive_data(wire[:split] or b"\x89\x80abcd"), *conn.receive_data(wire[split:])]
            assert conn.failure is None
            assert [e for e in events if isinstance(e, TextMessage)] == [TextMessage("Hello")]
    bad = encode_frame(0x1, payload + b"\x01", rsv1=True, mask=MASK)
    conn = Connection(Role.SERVER, extension=PerMessageDeflate())
    assert conn.receive_data(bad[:-1]) + conn.receive_data(bad[-1:]) == []
    assert conn.failure is not None and conn.failure.code == 1007


# ------------------------------------------------------------------ time per byte


def stream(make: Callable[[], RequestParser | ResponseParser | Connection]) -> Callable[[list[bytes]], None]:
    def parse(chunks: list[bytes]) -> None:
        parser = make()
        for chunk in chunks:
            parser.receive_data(chunk)
        assert getattr(parser, "failure", None) is None

    return parse


def frames_to(role: Role, deflate: bool = False) -> Callable[[list[bytes]], None]:
    return stream(lambda: Connection(role, max_message_size=None, extension=codec() if deflate else None))


def extensions(chunks: list[bytes]) -> None:
    with contextlib.suppress(HandshakeError):
        parse_extensions(Headers([("Sec-WebSocket-Extensions", b"".join(chunks))]))


def text_in_fragments_of_one_byte(n: int) -> bytes:
    halves = [b"\xc3", b"\xa9"]  # (of an "é")
    count = n // 3 // 2 * 2
    return b"".join(encode_frame(0x0 if i else 0x1, halves[i % 2], fin=i == count - 1) for i in range(count))


def compressed_fragments(n: int) -> bytes:
    """A message of ``n`` incompressible bytes, compressed, in frames of 7 payload bytes."""
    payload, _ = codec().encode(random.Random(n).randbytes(n))
    pieces = [payload[i : i + 7] for i in range(0, len(payload), 7)]
    frame, last = functools.partial(encode_frame, mask=MASK), len(pieces) - 1
    return b"".join(frame(0x0 if i else 0x2, p, fin=i == last, rsv1=not i) for i, p in enumerate(pieces))


GET, OK = b"GET / HTTP/1.1\r\n", b"HTTP/1.1 101 OK\r\n"
REQUEST_PARSER = stream(functools.partial(RequestParser, 1 << 22, 1 << 20))
#: Inputs of about n bytes, each the worst case of some loop of a parser, and that parser.
STREAMED: dict[str, tuple[Callable[[int], bytes], Callable[[list[bytes]], None]]] = {
    "spaces in a value": (lambda n: GET + b"X: a" + b" " * n + b"b\r\n\r\n", REQUEST_PARSER),
    "many headers": (lambda n: GET + b"X: 1\r\n" * (n // 6) + b"\r\n", REQUEST_PARSER),
    "a long target": (lambda n: b"GET /" + b"a" * n + b" HTTP/1.1\r\n\r\n", REQUEST_PARSER),
    "a line without its end": (lambda n: GET + b"X: " + b"\t" * n, REQUEST_PARSER),
    "tabs in a response": (lambda n: OK + b"X: a" + b"\t" * n + b"b\r\n\r\n", stream(ResponseParser)),
    "tiny frames": (lambda n: encode_frame(0x2, b"x", mask=MASK) * (n // 7), frames_to(Role.SERVER)),
    "one big frame": (lambda n: encode_frame(0x2, b"x" * n, mask=MASK), frames_to(Role.SERVER)),
    "pings": (lambda n: encode_frame(0x9, b"p" * 100) * (n // 102), frames_to(Role.CLIENT)),
    "text in 1-byte fragments": (text_in_fragments_of_one_byte, frames_to(Role.CLIENT)),
    "compressed fragments": (compressed_fragments, frames_to(Role.SERVER, deflate=True)),
}
PARAMETERS: dict[str, Callable[[int], bytes]] = {
    "spaces in a bad parameter": lambda n: b"x; a" + b" " * n + b"b",
    "spaces and no value": lambda n: b"x; a" + b" " * (n // 2) + b"=" + b" " * (n // 2),
    "many parameters": lambda n: b"x" + b"; a=1" * (n // 5) + b", y; b" * (n // 6),
}
WORST_CASES = [
    *(pytest.param(make, parse, False, id=name) for name, (make, parse) in STREAMED.items()),
    *(pytest.param(make, parse, True, id=f"{name}, bytewise") for name, (make, parse) in STREAMED.items()),
    *(pytest.param(make, extensions, False, id=name) for name, make in PARAMETERS.items()),
]


@pytest.mark.parametrize(("make", "parse", "bytewise"), WORST_CASES)
def test_time_per_byte_stays_flat(
    make: Callable[[int], bytes], parse: Callable[[list[bytes]], None], bytewise: bool
) -> None:
    n = 2000 if bytewise else 4000
    assert 3.6 < len(make(4 * n)) / len(make(n)) < 4.4

    def feed(data: bytes) -> None:
        parse([data[i : i + 1] for i in range(len(data))] if bytewise else [data])

    ratio = growth(make, feed, n)
    assert ratio < LINEAR_AT_MOST, f"four times the input took x{ratio:.1f} the time"
