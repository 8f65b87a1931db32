"""Properties of the sans-I/O core, checked with hypothesis.

- Any bytes, fed whole or byte by byte, give events or a recorded protocol error with a close code
  (or a HandshakeError with a status) — never another exception.
- Encoding any message in any fragmentation and parsing it gives the message back.
"""

from __future__ import annotations

import subprocess
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_ws.protocol import (
    BytesMessage,
    Connection,
    HandshakeError,
    RequestParser,
    ResponseParser,
    Role,
    TextMessage,
    validate_request,
)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLOSE_CODES = {1002, 1007, 1009}


def run_frames(role: Role, chunks: list[bytes]) -> None:
    conn = Connection(role, max_message_size=1000)
    for chunk in chunks:
        conn.receive_data(chunk)
        conn.data_to_send()
    if conn.failure is not None:
        assert conn.failure.code in CLOSE_CODES


@FAST
@given(st.binary(max_size=400), st.sampled_from([Role.SERVER, Role.CLIENT]))
def test_frame_parser_any_bytes(data: bytes, role: Role) -> None:
    run_frames(role, [data])
    run_frames(role, [data[i : i + 1] for i in range(len(data))])


@st.composite
def frame_soup(draw: st.DrawFn) -> bytes:
    """Plausible frames with random header bits: reaches deeper than plain random bytes."""
    out = b""
    for _ in range(draw(st.integers(1, 5))):
        b0 = draw(st.integers(0, 255))
        payload = draw(st.binary(max_size=130))
        mask = draw(st.binary(min_size=4, max_size=4))
        n = len(payload)
        out += bytes((b0, 0x80 | min(n, 125))) + mask + payload[: min(n, 125)]
    return out


@FAST
@given(frame_soup())
def test_frame_parser_frame_soup(data: bytes) -> None:
    run_frames(Role.SERVER, [data])
    run_frames(Role.SERVER, [data[i : i + 1] for i in range(len(data))])


@FAST
@given(st.binary(max_size=300))
def test_handshake_parsers_any_bytes(data: bytes) -> None:
    for whole in (True, False):
        for parser_type in (RequestParser, ResponseParser):
            parser = parser_type(max_size=200)
            chunks = [data] if whole else [data[i : i + 1] for i in range(len(data))]
            try:
                for chunk in [*chunks, b""]:
                    result = parser.receive_data(chunk)
                    if result is not None:
                        if parser_type is RequestParser:
                            validate_request(result)  # type: ignore[arg-type]
                        break
            except HandshakeError as exc:
                assert exc.status in {0, 400, 405, 426, 431}


@st.composite
def header_soup(draw: st.DrawFn) -> bytes:
    names = [
        "Host",
        "Upgrade",
        "Connection",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Protocol",
        "Sec-WebSocket-Extensions",
        "X",
    ]
    lines = [draw(st.sampled_from(["GET / HTTP/1.1", "POST / HTTP/1.1", "GET / HTTP/1.0"]))]
    for _ in range(draw(st.integers(0, 8))):
        value = draw(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30))
        lines.append(f"{draw(st.sampled_from(names))}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@FAST
@given(header_soup())
def test_request_validation_gives_key_or_status(data: bytes) -> None:
    request = RequestParser().receive_data(data)
    assert request is not None
    try:
        key = validate_request(request)
    except HandshakeError as exc:
        assert exc.status in {400, 405, 426}
    else:
        assert len(key) == 24


@FAST
@given(
    st.lists(st.one_of(st.text(max_size=300), st.binary(max_size=300)), min_size=1, max_size=5),
    st.data(),
)
def test_encode_then_parse_roundtrip(messages: list[str | bytes], data: st.DataObject) -> None:
    client = Connection(Role.CLIENT, max_message_size=None)
    wire = b""
    for message in messages:
        if data.draw(st.booleans()):
            cuts = sorted(data.draw(st.lists(st.integers(0, len(message)), max_size=4)))
            pieces = [message[a:b] for a, b in zip([0, *cuts], [*cuts, len(message)], strict=True)]
            for i, piece in enumerate(pieces):
                wire += client.send_fragment(piece, fin=i == len(pieces) - 1)
        elif isinstance(message, str):
            wire += client.send_text(message)
        else:
            wire += client.send_bytes(message)
    expected = [TextMessage(m) if isinstance(m, str) else BytesMessage(m) for m in messages]
    step = data.draw(st.integers(1, 64))
    server = Connection(Role.SERVER, max_message_size=None)
    events: list[object] = []
    for i in range(0, len(wire), step):
        events += server.receive_data(wire[i : i + step])
    assert server.failure is None
    assert events == expected


def test_protocol_core_never_imports_trio() -> None:
    # A stub parent package, so that only trio_ws/protocol/ runs (trio_ws/__init__ imports trio).
    code = (
        "import sys, types, pathlib, importlib.util\n"
        "spec = importlib.util.find_spec('trio_ws')\n"
        "stub = types.ModuleType('trio_ws')\n"
        "stub.__path__ = list(spec.submodule_search_locations)\n"
        "sys.modules['trio_ws'] = stub\n"
        "import trio_ws.protocol\n"
        "assert trio_ws.protocol.Connection\n"
        "bad = [m for m in sys.modules if m == 'trio' or m.startswith(('trio.', 'socket'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
