"""The sans-I/O connection: framing, messages, control frames, failures with their close codes."""

from __future__ import annotations

import pytest
from helpers import MASK, frame

from trio_ws.protocol import (
    BytesMessage,
    CloseReceived,
    Connection,
    ConnectionState,
    Extension,
    LocalProtocolError,
    Ping,
    Pong,
    ProtocolError,
    Role,
    TextMessage,
    apply_mask,
    encode_frame,
)

TEXT, BINARY, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10


def server(**kw: object) -> Connection:
    return Connection(Role.SERVER, **kw)  # type: ignore[arg-type]


def state_of(conn: Connection) -> ConnectionState:
    return conn.state  # read afresh: mypy would keep an earlier narrowing


def feed_bytewise(conn: Connection, data: bytes) -> list[object]:
    events: list[object] = []
    for i in range(len(data)):
        events += conn.receive_data(data[i : i + 1])
    return events


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 125, 126, 511, 512, 1024, 65535, 65536, 70001])
def test_apply_mask_is_xor_with_repeated_key(size: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    expected = bytes(b ^ MASK[i % 4] for i, b in enumerate(data))
    assert apply_mask(data, MASK) == expected
    assert apply_mask(memoryview(expected), MASK) == data


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_lengths_7_16_64_bits(size: int) -> None:
    payload = b"x" * size
    wire = frame(BINARY, payload)
    assert len(wire) == size + 2 + 4 + (0 if size < 126 else 2 if size < 65536 else 8)
    assert server().receive_data(wire) == [BytesMessage(payload)]
    if size < 1000:  # byte by byte is slow for the large frames; the 7-bit and 16-bit headers suffice
        assert feed_bytewise(server(), wire) == [BytesMessage(payload)]


def test_text_binary_and_fragments_with_interleaved_ping() -> None:
    conn = server()
    wire = (
        frame(TEXT, "hé".encode()[:2], fin=False)
        + frame(PING, b"p")
        + frame(CONT, "hé".encode()[2:], fin=False)
        + frame(CONT, b"llo")
    )
    assert conn.receive_data(wire) == [Ping(b"p"), TextMessage("héllo")]
    assert conn.data_to_send() == encode_frame(PONG, b"p")
    assert conn.data_to_send() == b""
    assert conn.receive_data(frame(BINARY, b"a", fin=False) + frame(CONT, b"b")) == [BytesMessage(b"ab")]
    assert conn.receive_data(frame(PONG, b"q")) == [Pong(b"q")]
    assert conn.receive_data(frame(TEXT, b"")) == [TextMessage("")]


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (frame(TEXT, b"x", rsv=4), 1002),  # RSV1 without an extension
        (frame(TEXT, b"x", rsv=2), 1002),  # RSV2
        (frame(TEXT, b"x", rsv=1), 1002),  # RSV3
        (frame(3, b"x"), 1002),  # reserved data opcode
        (frame(0xB, b"x"), 1002),  # reserved control opcode
        (frame(PING, b"x", fin=False), 1002),  # fragmented control frame
        (frame(PING, b"x" * 126), 1002),  # control frame over 125 bytes
        (frame(CONT, b"x"), 1002),  # continuation without a message
        (frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"), 1002),  # new message inside one
        (frame(TEXT, b"x", mask=None), 1002),  # unmasked client frame
        (frame(CLOSE, b"\x03"), 1002),  # 1-byte close body
        (frame(CLOSE, (999).to_bytes(2, "big")), 1002),  # close code not allowed
        (frame(CLOSE, (1005).to_bytes(2, "big")), 1002),
        (frame(CLOSE, (1006).to_bytes(2, "big")), 1002),
        (frame(CLOSE, (1015).to_bytes(2, "big")), 1002),
        (frame(CLOSE, (2000).to_bytes(2, "big")), 1002),
        (frame(CLOSE, (5000).to_bytes(2, "big")), 1002),
        (frame(CLOSE, b"\x03\xe8\xff"), 1007),  # close reason not UTF-8
        (frame(TEXT, b"\xff"), 1007),  # invalid UTF-8
        (frame(TEXT, b"\xce", fin=False) + frame(CONT, b"x"), 1007),  # split, still invalid
        (frame(TEXT, b"\xce"), 1007),  # truncated sequence at the end
        (frame(BINARY, b"", length=2**63), 1002),  # 64-bit length with the top bit set
        (frame(BINARY, b"x" * 11), 1009),  # over max_message_size=10
        (frame(TEXT, b"x" * 6, fin=False) + frame(CONT, b"x" * 5), 1009),  # fragments over it
    ],
)
def test_bad_input_fails_with_exact_code(wire: bytes, code: int) -> None:
    for conn, feed in ((server(max_message_size=10), None), (server(max_message_size=10), 1)):
        if feed is None:
            conn.receive_data(wire)
        else:
            feed_bytewise(conn, wire)
        assert conn.failure is not None
        assert conn.failure.code == code
        # Everything after the failure is discarded.
        assert conn.receive_data(frame(TEXT, b"after")) == []


def test_masked_frame_from_server_fails_client() -> None:
    client = Connection(Role.CLIENT)
    client.receive_data(frame(TEXT, b"x", mask=MASK))
    assert client.failure is not None and client.failure.code == 1002
    ok = Connection(Role.CLIENT)
    assert ok.receive_data(frame(TEXT, b"x", mask=None)) == [TextMessage("x")]


def test_invalid_utf8_fails_fast_before_the_message_ends() -> None:
    conn = server()
    # A frame whose first bytes are already invalid: fail before the rest of the payload arrives.
    whole = frame(TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80hello")
    conn.receive_data(whole[: 6 + 13])  # up to and including the \x90 after \xf4
    assert conn.failure is not None and conn.failure.code == 1007


def test_message_over_limit_fails_before_payload_is_buffered() -> None:
    conn = server(max_message_size=1000)
    conn.receive_data(frame(BINARY, b"", length=2**40)[:14])  # just the header
    assert conn.failure is not None and conn.failure.code == 1009


def test_events_before_a_failure_are_returned() -> None:
    conn = server()
    events = conn.receive_data(frame(TEXT, b"ok") + frame(TEXT, b"x", rsv=2) + frame(TEXT, b"y"))
    assert events == [TextMessage("ok")]
    assert conn.failure is not None and conn.failure.code == 1002
    assert conn.state is ConnectionState.FAILED  # the edge sends the close frame
    assert not conn.may_close_transport
    assert conn.send_close(1002, "bad") == encode_frame(CLOSE, b"\x03\xeabad")
    state: ConnectionState = conn.state
    assert state is ConnectionState.CLOSED  # no reply is awaited after a failure
    assert conn.may_close_transport


def test_peer_initiated_close_is_answered_and_ends_parsing() -> None:
    conn = server()
    events = conn.receive_data(frame(CLOSE, b"\x03\xe9bye") + frame(TEXT, b"late"))
    assert events == [CloseReceived(1001, "bye")]
    assert conn.data_to_send() == encode_frame(CLOSE, b"\x03\xe9")
    assert conn.state is ConnectionState.CLOSED
    assert conn.receive_data(frame(TEXT, b"more")) == []
    with pytest.raises(LocalProtocolError):
        conn.send_text("too late")


def test_empty_close_is_answered_with_empty_close() -> None:
    conn = server()
    assert conn.receive_data(frame(CLOSE)) == [CloseReceived(1005, "")]
    assert conn.data_to_send() == encode_frame(CLOSE, b"")


def test_local_close_then_peer_reply() -> None:
    conn = server()
    assert conn.send_close(1000, "done") == encode_frame(CLOSE, b"\x03\xe8done")
    assert conn.state is ConnectionState.CLOSING
    with pytest.raises(LocalProtocolError):
        conn.send_ping()
    # Data may still arrive before the peer's close; a ping is not answered any more.
    assert conn.receive_data(frame(TEXT, b"x") + frame(PING, b"p")) == [
        TextMessage("x"),
        Ping(b"p"),
    ]
    assert conn.data_to_send() == b""
    assert conn.receive_data(frame(CLOSE, b"\x03\xe8")) == [CloseReceived(1000, "")]
    assert state_of(conn) is ConnectionState.CLOSED
    assert conn.data_to_send() == b""


def test_end_of_stream() -> None:
    conn = server()
    assert conn.receive_data(b"") == []
    assert conn.end_of_stream and conn.state is ConnectionState.CLOSED


@pytest.mark.parametrize(
    ("code", "reason"),
    [(1004, ""), (1005, ""), (1006, ""), (1015, ""), (2999, ""), (5000, ""), (1000, "x" * 124)],
)
def test_send_close_refuses_bad_codes_and_long_reasons(code: int, reason: str) -> None:
    with pytest.raises(LocalProtocolError):
        server().send_close(code, reason)


def test_send_close_without_code() -> None:
    conn = server()
    assert conn.send_close(None) == encode_frame(CLOSE, b"")
    with pytest.raises(LocalProtocolError):
        server().send_close(None, "reason without code")


def test_client_masks_and_server_parses_it() -> None:
    client = Connection(Role.CLIENT)
    wire = client.send_text("hello") + client.send_bytes(b"\x00" * 70000) + client.send_ping(b"1")
    assert wire[1] & 0x80  # masked
    srv = server()
    assert srv.receive_data(wire) == [
        TextMessage("hello"),
        BytesMessage(b"\x00" * 70000),
        Ping(b"1"),
    ]
    assert Connection(Role.CLIENT).receive_data(srv.data_to_send()) == [Pong(b"1")]


def test_send_fragments() -> None:
    client = Connection(Role.CLIENT)
    wire = client.send_fragment("a", fin=False) + client.send_ping() + client.send_fragment("b", fin=False)
    with pytest.raises(LocalProtocolError):
        client.send_text("interleaved")
    with pytest.raises(LocalProtocolError):
        client.send_fragment(b"bytes in a text message", fin=True)
    wire += client.send_fragment("c", fin=True)
    srv = server()
    assert srv.receive_data(wire) == [Ping(b""), TextMessage("abc")]
    wire = client.send_fragment(b"x", fin=False) + client.send_fragment(b"y", fin=True)
    assert srv.receive_data(wire) == [BytesMessage(b"xy")]


def test_control_payload_limit_on_send() -> None:
    with pytest.raises(LocalProtocolError):
        server().send_ping(b"x" * 126)
    assert server().send_pong(b"x" * 125)[1] == 125


class _Reverse(Extension):
    """A toy RSV1 extension: reverses the payload of the messages it marks."""

    name = "reverse"

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def decode(self, data: bytes, *, final: bool, max_length: int | None) -> bytes:
        self.parts.append(data)
        if not final:
            return b""
        out = b"".join(self.parts)[::-1]
        self.parts.clear()
        if max_length is not None and len(out) > max_length:
            raise ProtocolError(1009, "too big")
        return out

    def encode(self, data: bytes) -> tuple[bytes, bool]:
        return (data[::-1], True) if len(data) > 1 else (data, False)


def test_extension_hook_decodes_rsv1_messages_and_bounds_output() -> None:
    srv = server(extension=_Reverse(), max_message_size=5)
    assert srv.receive_data(frame(TEXT, b"cba", rsv=4)) == [TextMessage("abc")]
    assert srv.receive_data(frame(TEXT, b"z")) == [TextMessage("z")]  # untransformed
    assert srv.receive_data(frame(BINARY, b"ba", rsv=4, fin=False) + frame(CONT, b"dc")) == [
        BytesMessage(b"cdab")
    ]
    # RSV1 on a continuation frame is an error even with the extension.
    srv.receive_data(frame(TEXT, b"a", rsv=4, fin=False) + frame(CONT, b"b", rsv=4))
    assert srv.failure is not None and srv.failure.code == 1002
    big = server(extension=_Reverse(), max_message_size=5)
    big.receive_data(frame(TEXT, b"abcdef", rsv=4))
    assert big.failure is not None and big.failure.code == 1009
    client = Connection(Role.CLIENT, extension=_Reverse())
    wire = client.send_text("hello")
    assert wire[0] & 0x40
    assert server(extension=_Reverse()).receive_data(wire) == [TextMessage("hello")]
