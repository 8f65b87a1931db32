"""The opening handshake, server and client sides."""

from __future__ import annotations

import pytest

from trio_ws.protocol import (
    HandshakeError,
    Headers,
    RequestParser,
    ResponseParser,
    accept_key,
    build_request,
    build_response,
    check_header,
    error_response,
    parse_extensions,
    subprotocols,
    validate_request,
    validate_response,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
GOOD = (
    "GET /chat?x=1 HTTP/1.1\r\n"
    "Host: example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    f"Sec-WebSocket-Key: {KEY}\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Protocol: chat, superchat\r\n"
    "Sec-WebSocket-Protocol: v3\r\n"
    'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-foo; a="1"\r\n'
    "\r\n"
)


def parse(text: str) -> str:
    parser = RequestParser()
    request = parser.receive_data(text.encode("latin-1"))
    assert request is not None
    return validate_request(request)


def test_rfc_example_accept_key() -> None:
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_good_request_in_any_chunking_with_trailing_bytes() -> None:
    data = GOOD.encode() + b"\x81\x80"
    for step in (1, 2, 7, len(data)):
        parser = RequestParser()
        request = None
        for i in range(0, len(data), step):
            got = parser.receive_data(data[i : i + step])
            if got is not None:
                assert request is None
                request = got
        assert request is not None
        assert request.method == "GET" and request.target == "/chat?x=1"
        assert request.headers["HOST"] == "example.com"
        assert validate_request(request) == KEY
        assert subprotocols(request.headers) == ["chat", "superchat", "v3"]
        assert parse_extensions(request.headers) == [
            ("permessage-deflate", [("client_max_window_bits", None)]),
            ("x-foo", [("a", "1")]),
        ]
    assert parser.trailing == b"\x81\x80"


def replace(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


@pytest.mark.parametrize(
    ("text", "status"),
    [
        (replace("GET", "POST"), 405),
        (replace("HTTP/1.1\r\nHost", "HTTP/1.0\r\nHost"), 400),
        (replace("Upgrade: websocket\r\n", ""), 426),  # a plain HTTP request
        (replace("Upgrade: websocket", "Upgrade: h2c"), 426),
        (replace("keep-alive, Upgrade", "keep-alive"), 400),
        (replace("Host: example.com\r\n", ""), 400),
        (replace("Host: example.com\r\n", "Host: a\r\nHost: b\r\n"), 400),
        (replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"), 426),
        (replace("Sec-WebSocket-Version: 13\r\n", ""), 400),
        (replace(KEY, "short"), 400),
        (replace(KEY, "AAAAAAAAAAAAAAAAAAAAAAAAAAAA"), 400),  # 21 bytes
        (replace(f"Sec-WebSocket-Key: {KEY}\r\n", ""), 400),
        (replace("chat, superchat", "chat, s p a c e"), 400),
        (replace('x-foo; a="1"', 'x-foo; a="1 2"'), 400),
        (replace('x-foo; a="1"', "x/foo"), 400),
        (replace("Host: example.com", "Host : example.com"), 400),  # space before colon
        (replace("Host: example.com", "Host: exa\x01mple.com"), 400),  # control character
        (replace("Host: example.com\r\n", "Host: example.com\r\n continued\r\n"), 400),  # obs-fold
        ("GARBAGE\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\n" + "X-A: b\r\n" * 200 + "\r\n", 431),
        ("GET / HTTP/1.1\r\nX-Big: " + "a" * 17000 + "\r\n\r\n", 431),
    ],
)
def test_bad_requests_get_exact_status(text: str, status: int) -> None:
    with pytest.raises(HandshakeError) as info:
        parse(text)
    assert info.value.status == status


def test_426_says_which_version_or_how_to_upgrade() -> None:
    with pytest.raises(HandshakeError) as info:
        parse(replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"))
    assert ("Sec-WebSocket-Version", "13") in info.value.headers
    with pytest.raises(HandshakeError) as info:
        parse(replace("Upgrade: websocket\r\n", ""))
    assert ("Upgrade", "websocket") in info.value.headers


def test_oversized_head_is_refused_before_it_completes() -> None:
    parser = RequestParser(max_size=1024)
    assert parser.receive_data(b"GET / HTTP/1.1\r\n") is None
    with pytest.raises(HandshakeError) as info:
        for _ in range(100):
            parser.receive_data(b"X-Filler: " + b"a" * 50 + b"\r\n")
    assert info.value.status == 431


def test_end_of_stream_before_the_head_is_400() -> None:
    parser = RequestParser()
    parser.receive_data(b"GET / HTTP/1.1\r\n")
    with pytest.raises(HandshakeError) as info:
        parser.receive_data(b"")
    assert info.value.status == 400


def test_plain_http_request_is_recognised() -> None:
    request = RequestParser().receive_data(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert request is not None and not request.is_upgrade


def test_responses() -> None:
    data = build_response(KEY, subprotocol="chat", extensions="x-foo", headers=[("Set-Cookie", "a=b")])
    assert data.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in data
    assert b"Sec-WebSocket-Protocol: chat\r\n" in data and b"Set-Cookie: a=b\r\n" in data
    assert data.endswith(b"\r\n\r\n")
    for status in (400, 403, 404, 426, 429, 431, 503, 599):
        refusal = error_response(status, headers=[("Retry-After", "1")])
        head, _, body = refusal.partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {status} ".encode())
        assert b"Connection: close" in head and b"Retry-After: 1" in head
        assert f"Content-Length: {len(body)}".encode() in head and body


@pytest.mark.parametrize(
    ("name", "value"),
    [("X-A", "b\r\nInjected: 1"), ("X-A", "b\nc"), ("Bad Name", "v"), ("X", "é€")],
)
def test_header_injection_is_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        check_header(name, value)
    with pytest.raises(ValueError):
        build_response(KEY, headers=[(name, value)])


def test_headers_are_case_insensitive_and_multi_valued() -> None:
    headers = Headers([(b"X-A", b"1"), ("x-a", "2"), ("Other", "3")])
    assert headers["x-A"] == "1" and headers.getlist("X-A") == ["1", "2"]
    assert "OTHER" in headers and not headers.__contains__(5) and len(headers) == 2
    assert list(headers) == ["x-a", "other"]
    assert headers.raw[0] == (b"X-A", b"1")
    assert headers == Headers([("x-a", "1"), ("X-A", "2"), ("other", "3")])
    assert hash(headers) == hash(Headers([("x-a", "1"), ("X-A", "2"), ("other", "3")]))
    assert headers != {"x-a": "1"}
    assert "x-a" in repr(headers)
    with pytest.raises(KeyError):
        headers["missing"]


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\nHost: x \r\nX-A:\tb c  \r\nEmpty:\r\nx-a: 2\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # no header at all
    ],
)
def test_parsed_headers_compact_to_their_bytes_and_read_the_same(head: bytes) -> None:
    request = RequestParser().receive_data(head)
    assert request is not None
    headers = request.headers
    before = (headers.raw, dict(headers), headers.getlist("x-a"), headers.multi_items())
    headers.compact()  # what a server does once the handshake is answered
    assert headers.is_compact
    assert (headers.raw, dict(headers), headers.getlist("x-a"), headers.multi_items()) == before
    if len(head) > 20:
        assert before[0] == ((b"Host", b"x"), (b"X-A", b"b c"), (b"Empty", b""), (b"x-a", b"2"))
        assert before[2] == ["b c", "2"]


def client_roundtrip(response: bytes, key: str, offered: list[str] = []) -> object:  # noqa: B006
    parser = ResponseParser()
    parsed = None
    for i in range(len(response)):
        parsed = parser.receive_data(response[i : i + 1]) or parsed
    assert parsed is not None
    return validate_response(parsed, key, offered, ["x-foo"])


def test_client_request_and_response_validation() -> None:
    request, key = build_request("h:1", "/p?q=1", subprotocols=["a", "b"], extensions="x-foo")
    parsed = RequestParser().receive_data(request)
    assert parsed is not None and validate_request(parsed) == key
    assert subprotocols(parsed.headers) == ["a", "b"]
    good = build_response(key, subprotocol="b", extensions="x-foo")
    assert client_roundtrip(good, key, ["a", "b"]) == ("b", [("x-foo", [])])
    bad_cases = [
        (build_response(key, subprotocol="c"), 0),  # not offered
        (build_response(KEY), 0),  # wrong accept key
        (build_response(key, extensions="x-bar"), 0),  # extension not offered
        (good.replace(b"Upgrade: websocket\r\n", b""), 0),
        (good.replace(b"Connection: Upgrade\r\n", b""), 0),
        (error_response(403), 403),
    ]
    for response, status in bad_cases:
        with pytest.raises(HandshakeError) as info:
            client_roundtrip(response, key, ["a", "b"])
        assert info.value.status == status
    for garbage in (b"HTTP/1.0 101 OK\r\n\r\n", b"HTTP/1.1 101 OK\r\nbad header\r\n\r\n"):
        with pytest.raises(HandshakeError) as info:
            ResponseParser().receive_data(garbage)
        assert info.value.status == 0
    with pytest.raises(HandshakeError):
        ResponseParser().receive_data(b"")
    with pytest.raises(HandshakeError):
        ResponseParser(max_size=10).receive_data(b"HTTP/1.1 101 Switching Protocols\r\n")
    with pytest.raises(ValueError):
        build_request("h", "no-slash")
