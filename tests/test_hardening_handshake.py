"""The opening handshake against hostile input: linear-time parsing, undecodable header values, and
requests refused as soon as their bytes show they can never become valid."""

from __future__ import annotations

import functools
import gc
import logging
import re
import time
from collections.abc import Callable

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_ws
from trio_ws.protocol import (
    DeflateOptions,
    HandshakeError,
    RequestHead,
    RequestParser,
    ResponseParser,
    negotiate_deflate,
    parse_extensions,
    validate_request,
)
from trio_ws.protocol._headers import FIELD_LINE, REQUEST_LINE, STATUS_LINE, parse_header_line, parse_line

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
BASE = {
    b"Host": b"example.com",
    b"Upgrade": b"websocket",
    b"Connection": b"Upgrade",
    b"Sec-WebSocket-Key": KEY,
    b"Sec-WebSocket-Version": b"13",
}


def request(*extra: bytes, **replace: bytes) -> bytes:
    """An upgrade request; ``replace`` swaps a base header's value (``Sec_WebSocket_Key=...``)."""
    fields = {**BASE, **{k.replace("_", "-").encode(): v for k, v in replace.items()}}
    lines = [b"GET /chat HTTP/1.1", *(name + b": " + value for name, value in fields.items()), *extra]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def parse_whole(data: bytes, max_size: int = 1 << 20) -> RequestHead:
    parsed = RequestParser(max_size=max_size).receive_data(data)
    assert parsed is not None
    return parsed


def parse_bytewise(data: bytes, max_size: int = 1 << 20) -> RequestHead:
    parser = RequestParser(max_size=max_size)
    for i in range(len(data) - 1):
        assert parser.receive_data(data[i : i + 1]) is None
    parsed = parser.receive_data(data[-1:])
    assert parsed is not None
    return parsed


# ------------------------------------------------------------------ linear time


def per_call(fn: Callable[[], object], *, rounds: int = 5, min_time: float = 0.005) -> float:
    """The best time of one call of ``fn`` over ``rounds`` batches, each long enough to time well
    (the garbage collector off: its passes come at random)."""
    gc.collect()
    gc.disable()
    try:
        calls = 1
        while True:
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
            calls *= 2
        best = elapsed / calls
        for _ in range(rounds - 1):
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            best = min(best, (time.perf_counter() - start) / calls)
    finally:
        gc.enable()
    return best


#: The most four times the input may cost: linear is 4, quadratic 16. The gap is wide on purpose:
#: a busy machine can make one measurement twice as slow as another and still not fail the test.
LINEAR_AT_MOST = 8.0


def growth(make: Callable[[int], bytes], parse: Callable[[bytes], object], n: int) -> float:
    """How much longer ``parse`` takes for ``make(4 * n)`` than for ``make(n)``: about 4 if linear,
    16 if quadratic. Measured again (at most four times) when above :data:`LINEAR_AT_MOST`, in case
    the machine was busy."""
    small, large = make(n), make(4 * n)
    ratio = float("inf")
    for _ in range(5):
        ratio = min(ratio, per_call(lambda: parse(large)) / per_call(lambda: parse(small)))
        if ratio < LINEAR_AT_MOST:
            break
    return ratio


def assert_linear(make: Callable[[int], bytes], parse: Callable[[bytes], object], n: int = 2000) -> None:
    """Four times the input takes at most about four times the time (quadratic parsing takes 16)."""
    ratio = growth(make, parse, n)
    assert ratio < LINEAR_AT_MOST, f"time for {4 * n} vs {n}: x{ratio:.1f}"


def spaces_in_value(n: int) -> bytes:
    return request(b"X-A: a" + b" " * n + b"b")


def tabs_in_value(n: int) -> bytes:
    return request(b"X-A:\ta" + b"\t " * (n // 2) + b"b\t")


def spaces_in_extension_param(n: int) -> bytes:
    return request(b"Sec-WebSocket-Extensions: permessage-deflate; a" + b" " * n + b"=1")


def spaces_in_a_bad_extension_param(n: int) -> bytes:
    return request(b"Sec-WebSocket-Extensions: permessage-deflate; a" + b" " * n + b"b")


def spaces_before_quoted_param(n: int) -> bytes:
    return request(b'Sec-WebSocket-Extensions: x-foo; a= "' + b" " * n + b'"')


def handshake(data: bytes) -> None:
    """Parse and check a request the way the server does, whatever the verdict."""
    try:
        req = parse_whole(data)
        validate_request(req)
        negotiate_deflate(parse_extensions(req.headers), DeflateOptions())
    except HandshakeError:
        pass


@pytest.mark.parametrize(
    "make",
    [
        spaces_in_value,
        tabs_in_value,
        spaces_in_extension_param,
        spaces_in_a_bad_extension_param,
        spaces_before_quoted_param,
    ],
)
def test_request_parsing_takes_linear_time(make: Callable[[int], bytes]) -> None:
    assert_linear(make, handshake)


def test_16_kib_of_spaces_in_a_header_value_parses_at_once() -> None:
    for make in (spaces_in_value, spaces_in_extension_param):
        data = make(16000)
        assert len(data) <= 16 * 1024
        assert per_call(functools.partial(handshake, data), rounds=3) < 0.02  # was 0.5-1.1 s
    headers = parse_whole(spaces_in_value(16000)).headers
    assert headers["x-a"] == "a" + " " * 16000 + "b"  # the inside of a value is kept
    assert parse_extensions(parse_whole(spaces_in_extension_param(100)).headers) == [
        ("permessage-deflate", [("a", "1")])
    ]


OLD_HEADER_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*?)[ \t]*")
OLD_REQUEST_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP/(\d)\.(\d)")
OLD_STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3})(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?")
SPICE = b"\x00\t\n\r \"',;:=\\/\x0b\x0c\x7f\x80\x85\xa0\xffaZ09-HTP.~"
WORDS = [b"GET", b"HTTP/1.1", b"HTTP/", b"101", b"Host", b"/chat", b" \t ", b"\r\n"]
LINE_PIECES = [*(bytes([b]) for b in SPICE), *WORDS]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(LINE_PIECES), max_size=12).map(b"".join))
def test_line_parsers_agree_with_the_regular_expressions_they_replace(line: bytes) -> None:
    m = OLD_HEADER_LINE.fullmatch(line)
    assert parse_header_line(line) == parse_line(FIELD_LINE, line) == (None if m is None else (m[1], m[2]))
    m = OLD_REQUEST_LINE.fullmatch(line)
    assert parse_line(REQUEST_LINE, line) == (None if m is None else (m[1], m[2], m[3] + b"." + m[4]))
    m = OLD_STATUS_LINE.fullmatch(line)
    assert parse_line(STATUS_LINE, line) == (None if m is None else (m[1], m[2] or b""))


# ------------------------------------------------------------------ undecodable values


@pytest.mark.parametrize(
    "data",
    [
        request(Sec_WebSocket_Key=b"\xff\xfe" + KEY[2:]),
        request(Sec_WebSocket_Key=b"\xe9" * 24),
        request(Sec_WebSocket_Key=KEY[:-2] + b"\xa0="),  # (a no-break space: whitespace to str.strip)
        request(Sec_WebSocket_Key=b"\x85" + KEY),
        request(Sec_WebSocket_Version=b"1\xb3"),
        request(Sec_WebSocket_Version=b"\xa013"),
        request(Host=b"\xff\xfe"),
        request(Upgrade=b"websocket\xff"),
        request(Connection=b"\xffUpgrade"),
        request(b"Sec-WebSocket-Protocol: ch\xe2t"),
        request(b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=\xb9"),
        request(b"Sec-WebSocket-Extensions: \xe9; a"),
        request(b'Sec-WebSocket-Extensions: x; a="\xff"'),
        request().replace(b"/chat", b"/\xff\xfe", 1),
    ],
)
def test_non_ascii_header_values_are_a_handshake_error_or_accepted(data: bytes) -> None:
    for parse in (parse_whole, parse_bytewise):
        req = parse(data)
        try:
            key = validate_request(req)
        except HandshakeError as exc:
            assert exc.status in (400, 426)
            continue
        assert key == KEY.decode()  # only a Host or target of Latin-1 text passes
        assert req.headers["host"] in ("example.com", "\xff\xfe")


@pytest.mark.parametrize("key", [b"\xff\xfe" + KEY[2:], b"\xe9" * 24, KEY[:-2] + b"\xa0="])
def test_non_ascii_key_is_400(key: bytes) -> None:
    with pytest.raises(HandshakeError) as info:
        validate_request(parse_whole(request(Sec_WebSocket_Key=key)))
    assert info.value.status == 400


# ------------------------------------------------------------------ refused at once

# Each is the shortest prefix that shows the request can never be valid: one byte less is still fine.
HOPELESS = [
    pytest.param(b"\x16", id="TLS ClientHello"),
    pytest.param(b"\x00", id="NUL"),
    pytest.param(b"\x80", id="binary"),
    pytest.param(b" ", id="leading space"),
    pytest.param(b"G\x01", id="control in method"),
    pytest.param(b"GET  ", id="empty target"),
    pytest.param(b"GET /\x0b", id="whitespace in target"),
    pytest.param(b"GET / HTTP/1.1 ", id="third space"),
    pytest.param(b"GET / HTTQ", id="not HTTP"),
    pytest.param(b"GET / HTTP/x", id="version not a digit"),
    pytest.param(b"GET / HTTP/1.10", id="version too long"),
    pytest.param(b"GET / HTTP/1.1\n", id="bare LF after the request line"),
    pytest.param(b"\n", id="bare LF first"),
    pytest.param(b"GET / HTTP/1.1\rX", id="bare CR"),
    pytest.param(b"GET / HTTP/1\r\n", id="request line incomplete at CRLF"),
    pytest.param(b"\r\n", id="empty request line"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\n", id="bare LF after a header"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\n", id="bare LF ending the head"),
    pytest.param(b"GET / HTTP/1.1\r\n:", id="empty header name"),
    pytest.param(b"GET / HTTP/1.1\r\nbad ", id="space in header name"),
    pytest.param(b"GET / HTTP/1.1\r\nHost ", id="space before colon"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\x00", id="NUL in header value"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\x7f", id="DEL in header value"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\rb", id="CR inside a header value"),
    pytest.param(b"GET / HTTP/1.1\r\nHost\r\n", id="header line without colon"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n ", id="obs-fold"),
]


@pytest.mark.parametrize("prefix", HOPELESS)
def test_hopeless_request_is_refused_on_the_byte_that_shows_it(prefix: bytes) -> None:
    with pytest.raises(HandshakeError) as info:
        RequestParser().receive_data(prefix)
    assert info.value.status == 400
    parser = RequestParser()
    for i in range(len(prefix) - 1):
        assert parser.receive_data(prefix[i : i + 1]) is None  # not yet: it could still be valid
    with pytest.raises(HandshakeError) as info:
        parser.receive_data(prefix[-1:])
    assert info.value.status == 400


@pytest.mark.parametrize(
    "data",
    [
        request(b"X-Tabs:\t \tb\t c \t", b"Empty:", b"X-Colon: a:b::c", b"X-Latin: caf\xe9"),
        request(b'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x; a="1"'),
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /?q=%20&x=\xff HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost:x\r\n\r\n",
    ],
)
def test_valid_request_parses_in_any_chunking(data: bytes) -> None:
    whole = parse_whole(data)
    assert parse_bytewise(data) == whole
    for cut in range(1, len(data)):
        parser = RequestParser()
        assert parser.receive_data(data[:cut]) is None
        assert parser.receive_data(bytearray(data[cut:])) == whole
    trailing = RequestParser()
    assert trailing.receive_data(data + b"\x81\x80") == whole and trailing.trailing == b"\x81\x80"


def test_a_request_of_exactly_max_size_passes_in_any_chunking() -> None:
    data = request(b"X-Pad: " + b"p" * 200)
    assert parse_whole(data, max_size=len(data)) == parse_bytewise(data, max_size=len(data))
    for parse in (parse_whole, parse_bytewise):
        with pytest.raises(HandshakeError) as info:
            parse(data, max_size=len(data) - 1)
        assert info.value.status == 431


def test_too_many_headers_are_refused_before_the_head_ends() -> None:
    parser = RequestParser(max_headers=3)
    assert parser.receive_data(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n") is None
    with pytest.raises(HandshakeError) as info:
        parser.receive_data(b"D: 4\r\n")
    assert info.value.status == 431


def test_response_parser_refuses_a_hopeless_status_line_at_once() -> None:
    for prefix in (b"\x16", b"HTTP/1.0", b"HTTP/1.1 1x", b"HTTP/1.1 101x", b"HTTP/1.1 101 OK\n"):
        parser = ResponseParser()
        for i in range(len(prefix) - 1):
            assert parser.receive_data(prefix[i : i + 1]) is None
        with pytest.raises(HandshakeError) as info:
            parser.receive_data(prefix[-1:])
        assert info.value.status == 0
    assert ResponseParser().receive_data(b"HTTP/1.1 101\r\n\r\n") is not None


# ------------------------------------------------------------------ end to end


async def noop(ws: trio_ws.WebSocket) -> None:
    await ws.accept()


async def exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` without ending the stream; return what the server sends until it closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        reply = b""
        while chunk := await stream.receive_some():
            reply += chunk
    return reply


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("trio_ws") and r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    "data",
    [
        request(Sec_WebSocket_Key=b"\xff\xfe" + KEY[2:]),
        request(Sec_WebSocket_Key=KEY[:-2] + b"\xa0="),
        request(Sec_WebSocket_Version=b"1\xb3"),
        request(b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=\xb9"),
    ],
)
async def test_server_refuses_undecodable_header_values_without_an_error(
    data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async with trio_ws.open_websocket_server(noop, "127.0.0.1", 0) as server:
        with trio.fail_after(5):
            reply = await exchange(server.port, data)
    assert reply.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 426 "))
    if b"Sec-WebSocket-Key: " + KEY not in data:
        assert reply.startswith(b"HTTP/1.1 400 ")
    assert errors_logged(caplog) == []


TLS_CLIENT_HELLO = bytes.fromhex("160301020001000001fc0303") + bytes(range(32)) + b"\x20" + bytes(32)


@pytest.mark.parametrize(
    "data",
    [
        TLS_CLIENT_HELLO,
        bytes(range(256)),
        b"GET / HTTP/1.1\nHost: x\n\n",
        b"GET /a b HTTP/1.1\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nnot a header\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX: \x01",
    ],
)
async def test_server_refuses_a_hopeless_request_at_once(
    data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async with trio_ws.open_websocket_server(noop, "127.0.0.1", 0) as server:
        with trio.fail_after(2):  # not open_timeout (10 s)
            reply = await exchange(server.port, data)
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert errors_logged(caplog) == []


async def test_server_still_accepts_a_request_sent_byte_by_byte() -> None:
    data = request()
    async with trio_ws.open_websocket_server(noop, "127.0.0.1", 0) as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            with trio.fail_after(5):
                for i in range(len(data)):
                    await stream.send_all(data[i : i + 1])
                reply = await stream.receive_some()
    assert reply.startswith(b"HTTP/1.1 101 ")
