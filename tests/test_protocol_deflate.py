"""permessage-deflate (RFC 7692) in the sans-I/O core: negotiation from both ends, the codec, bombs."""

from __future__ import annotations

import itertools
import json
import os
import tracemalloc
import zlib

import pytest
from helpers import frame

from trio_ws.protocol import (
    BytesMessage,
    CloseCode,
    Connection,
    DeflateOptions,
    HandshakeError,
    Headers,
    PerMessageDeflate,
    Role,
    TextMessage,
    accept_deflate,
    apply_mask,
    deflate_offer,
    negotiate_deflate,
    parse_extensions,
)


def offers(value: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    return parse_extensions(Headers([("Sec-WebSocket-Extensions", value)]))


def server_answer(offer: str, options: DeflateOptions | None = None) -> str | None:
    ext = negotiate_deflate(offers(offer), options or DeflateOptions())
    return None if ext is None else ext.response_params()


# ------------------------------------------------------------ server negotiation


@pytest.mark.parametrize(
    ("offer", "answer"),
    [
        # Chromium's and Firefox's offer: the server limits both windows to its defaults.
        (
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
        ),
        # No client_max_window_bits offered: the client's window must not be limited.
        ("permessage-deflate", "permessage-deflate; server_max_window_bits=12"),
        # A smaller window asked of the server, or offered by the client, is honoured.
        (
            "permessage-deflate; server_max_window_bits=9; client_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=9; client_max_window_bits=10",
        ),
        ("permessage-deflate; server_max_window_bits=15", "permessage-deflate; server_max_window_bits=12"),
        ('permessage-deflate; server_max_window_bits="8"', "permessage-deflate; server_max_window_bits=8"),
        # server_no_context_takeover is an order; client_no_context_takeover only a hint.
        (
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=12",
        ),
        ("permessage-deflate; client_no_context_takeover", "permessage-deflate; server_max_window_bits=12"),
        # Malformed offers are declined, and the next acceptable one is taken.
        ("permessage-deflate; foo", None),
        ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
        ("permessage-deflate; server_max_window_bits", None),
        ("permessage-deflate; server_max_window_bits=7", None),
        ("permessage-deflate; server_max_window_bits=16", None),
        ("permessage-deflate; client_max_window_bits=08", None),
        ("permessage-deflate; server_no_context_takeover=1", None),
        ("permessage-deflate; client_max_window_bits=9; client_max_window_bits=9", None),
        (
            "permessage-deflate; x=1, permessage-deflate; client_no_context_takeover, permessage-deflate",
            "permessage-deflate; server_max_window_bits=12",
        ),
        ("x-webkit-deflate-frame, permessage-deflate", "permessage-deflate; server_max_window_bits=12"),
        ("x-webkit-deflate-frame", None),
    ],
)
def test_server_negotiation(offer: str, answer: str | None) -> None:
    assert server_answer(offer) == answer


def test_server_options_shape_the_answer() -> None:
    options = DeflateOptions(
        window_bits=15, peer_window_bits=15, no_context_takeover=True, peer_no_context_takeover=True
    )
    assert server_answer("permessage-deflate; client_max_window_bits", options) == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    )
    options = DeflateOptions(window_bits=10, peer_window_bits=9)
    assert server_answer("permessage-deflate; client_max_window_bits=11", options) == (
        "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9"
    )
    ext = negotiate_deflate(offers("permessage-deflate; client_max_window_bits=11"), options)
    assert ext is not None
    assert (ext.local_max_window_bits, ext.remote_max_window_bits) == (10, 9)


def test_options_are_validated() -> None:
    for bad in (
        {"window_bits": 7},
        {"peer_window_bits": 16},
        {"level": 10},
        {"mem_level": 0},
        {"min_size": -1},
    ):
        with pytest.raises(ValueError):
            DeflateOptions(**bad)  # type: ignore[arg-type]


# ------------------------------------------------------------ client negotiation


def test_client_offer() -> None:
    assert deflate_offer(DeflateOptions()) == (
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12, "
        "permessage-deflate; client_max_window_bits=12"
    )
    options = DeflateOptions(
        window_bits=15, peer_window_bits=15, no_context_takeover=True, peer_no_context_takeover=True
    )
    assert deflate_offer(options) == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits"
    )


@pytest.mark.parametrize(
    "answer",
    [
        "permessage-deflate, permessage-deflate",
        "permessage-deflate; foo",
        "permessage-deflate; client_max_window_bits",  # a response's must have a value
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_no_context_takeover=x",
    ],
)
def test_client_fails_on_an_answer_it_did_not_allow(answer: str) -> None:
    with pytest.raises(HandshakeError) as info:
        accept_deflate(offers(answer), DeflateOptions())
    assert info.value.status == 0


def test_client_reads_the_answer() -> None:
    assert accept_deflate(offers("x-other"), DeflateOptions()) is None
    ext = accept_deflate(
        offers("permessage-deflate; server_max_window_bits=10; client_max_window_bits=9"), DeflateOptions()
    )
    assert ext is not None
    assert (ext.local_max_window_bits, ext.remote_max_window_bits) == (9, 10)
    assert not ext.local_no_context_takeover
    ext = accept_deflate(
        offers("permessage-deflate; client_no_context_takeover; server_no_context_takeover"), DeflateOptions()
    )
    assert ext is not None
    assert ext.local_no_context_takeover
    assert ext.remote_no_context_takeover
    assert ext.remote_max_window_bits == 15  # the server did not limit itself
    assert ext.local_max_window_bits == 12  # nor us: our own setting holds
    # A server may ignore the value we offered (§7.1.2.2): we keep to ours.
    ext = accept_deflate(offers("permessage-deflate; client_max_window_bits=15"), DeflateOptions())
    assert ext is not None
    assert ext.local_max_window_bits == 12
    # We asked for server_no_context_takeover in every offer: an answer without it is wrong.
    with pytest.raises(HandshakeError):
        accept_deflate(offers("permessage-deflate"), DeflateOptions(peer_no_context_takeover=True))


# ------------------------------------------------------------ the codec


def pair(
    server_options: DeflateOptions, client_options: DeflateOptions, **kwargs: int
) -> tuple[Connection, Connection]:
    """A client and a server Connection with what the two options negotiate through the headers."""
    server_ext = negotiate_deflate(offers(deflate_offer(client_options)), server_options)
    assert server_ext is not None
    client_ext = accept_deflate(offers(server_ext.response_params()), client_options)
    assert client_ext is not None
    return (
        Connection(Role.CLIENT, extension=client_ext, **kwargs),
        Connection(Role.SERVER, extension=server_ext, **kwargs),
    )


def messages(n: int) -> list[str | bytes]:
    out: list[str | bytes] = []
    for i in range(n):
        doc = json.dumps([{"id": i * 100 + j, "user": f"u{j}", "price": j * 1.25} for j in range(i % 40)])
        out.append(doc if i % 3 else doc.encode() + os.urandom(i % 50))
    return [*out, "", b"", "é" * 3000]


OPTION_SETS = [
    DeflateOptions(),
    DeflateOptions(min_size=0),
    DeflateOptions(window_bits=8, peer_window_bits=8, min_size=0),
    DeflateOptions(window_bits=15, peer_window_bits=15, mem_level=9, level=9),
    DeflateOptions(no_context_takeover=True, peer_no_context_takeover=True, level=1),
    DeflateOptions(window_bits=9, peer_window_bits=11, no_context_takeover=True),
]


@pytest.mark.parametrize(
    ("server_options", "client_options"), list(itertools.product(OPTION_SETS, OPTION_SETS))
)
def test_messages_round_trip_both_ways(
    server_options: DeflateOptions, client_options: DeflateOptions
) -> None:
    client, server = pair(server_options, client_options)
    for message in messages(60):
        for sender, receiver in ((client, server), (server, client)):
            data = sender.send_text(message) if isinstance(message, str) else sender.send_bytes(message)
            # Byte by byte for some, to cross every frame and zlib boundary.
            chunks = [data[i : i + 1] for i in range(len(data))] if len(data) < 64 else [data]
            events = [e for chunk in chunks for e in receiver.receive_data(chunk)]
            assert receiver.failure is None
            expected = TextMessage(message) if isinstance(message, str) else BytesMessage(message)
            assert events == [expected]


def test_rsv1_marks_compressed_messages_and_small_ones_go_plain() -> None:
    client, _ = pair(DeflateOptions(), DeflateOptions(min_size=100))
    assert client.send_text("x" * 99)[0] & 0x40 == 0
    big = client.send_text("x" * 1000)
    assert big[0] & 0x40
    assert len(big) < 30


def unmask(data: bytes) -> bytes:
    """The payload of a short masked frame."""
    assert data[1] & 0x7F < 126
    return apply_mask(data[6:], data[2:6])


def test_context_takeover_shrinks_repeated_messages_and_no_takeover_does_not() -> None:
    text = json.dumps({"type": "quote", "symbol": "ABCD", "bid": 101.25, "ask": 101.5, "seq": 1})
    for takeover in (True, False):
        client, server = pair(DeflateOptions(), DeflateOptions(no_context_takeover=not takeover))
        first, second = client.send_text(text), client.send_text(text)
        assert server.receive_data(first + second) == [TextMessage(text)] * 2
        if takeover:
            assert len(second) < len(first) / 2
        else:
            assert unmask(second) == unmask(first)
            # Each message decodes on its own with a fresh decompressor.
            assert zlib.decompressobj(-15).decompress(unmask(second) + b"\x00\x00\xff\xff") == text.encode()


def test_compressed_fragments_and_control_frames_in_between() -> None:
    _, server = pair(DeflateOptions(), DeflateOptions())
    payload = deflate(b"hello " * 200)
    head, tail = payload[:7], payload[7:]
    data = frame(0x1, head, fin=False, rsv=4) + frame(0x9, b"p") + frame(0x0, tail)
    events = server.receive_data(data)
    assert events[-1] == TextMessage("hello " * 200)
    assert server.failure is None


def deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -12)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(0x1, b"\xff\xff\xff", rsv=4), CloseCode.INVALID_FRAME_PAYLOAD_DATA),  # not DEFLATE
        (frame(0x1, b"abc", fin=False, rsv=4) + frame(0x0, b"d", rsv=4), CloseCode.PROTOCOL_ERROR),
        (frame(0x9, b"", rsv=4), CloseCode.PROTOCOL_ERROR),  # RSV1 on a control frame
        # Valid DEFLATE of bytes that are not UTF-8, in a text message.
        (frame(0x1, deflate(b"ok \xff\xfe"), rsv=4), CloseCode.INVALID_FRAME_PAYLOAD_DATA),
    ],
)
def test_bad_compressed_input_fails_the_connection(data: bytes, code: int) -> None:
    _, server = pair(DeflateOptions(), DeflateOptions())
    assert server.receive_data(data) == []
    assert server.failure is not None
    assert server.failure.code == code


def test_a_final_block_ends_the_stream_and_the_next_message_starts_anew() -> None:
    _, server = pair(DeflateOptions(), DeflateOptions())
    first = zlib.compressobj(6, zlib.DEFLATED, -12)
    data = first.compress(b"one") + first.flush(zlib.Z_FINISH)  # BFINAL set
    data2 = deflate(b"two")
    assert server.receive_data(frame(0x2, data, rsv=4) + frame(0x2, data2, rsv=4)) == [
        BytesMessage(b"one"),
        BytesMessage(b"two"),
    ]
    # Anything after the final block is refused.
    _, server = pair(DeflateOptions(), DeflateOptions())
    assert server.receive_data(frame(0x2, data + b"\x01", rsv=4)) == []
    assert server.failure is not None
    assert server.failure.code == CloseCode.INVALID_FRAME_PAYLOAD_DATA


def zip_bomb(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -12)
    chunk = b"\x00" * 2**20
    out = [compressor.compress(chunk) for _ in range(size // len(chunk))]
    return b"".join([*out, compressor.flush(zlib.Z_SYNC_FLUSH)])[:-4]


@pytest.mark.parametrize("fragmented", [False, True])
def test_a_10mb_bomb_fails_with_1009_after_bounded_work(fragmented: bool) -> None:
    bomb = zip_bomb(10 * 2**20)
    assert len(bomb) < 20_000
    _, server = pair(DeflateOptions(), DeflateOptions(), max_message_size=2**20)
    if fragmented:
        pieces = [bomb[i : i + 100] for i in range(0, len(bomb), 100)]
        data = frame(0x2, pieces[0], fin=False, rsv=4)
        data += b"".join(frame(0x0, p, fin=False) for p in pieces[1:]) + frame(0x0, b"")
    else:
        data = frame(0x2, bomb, rsv=4)
    tracemalloc.start()
    try:
        events = server.receive_data(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert events == []
    assert server.failure is not None
    assert server.failure.code == CloseCode.MESSAGE_TOO_BIG
    assert peak < 4 * 2**20  # about the 1 MiB limit (plus copies), never the 10 MiB
    # Just under the limit passes.
    _, server = pair(DeflateOptions(), DeflateOptions(), max_message_size=2**20)
    assert server.receive_data(frame(0x2, zip_bomb(2**20), rsv=4)) == [BytesMessage(b"\x00" * 2**20)]


def test_zlib_state_is_created_on_first_use_and_dropped_without_takeover() -> None:
    ext = PerMessageDeflate(local_no_context_takeover=True, remote_no_context_takeover=True)
    assert ext._encoder is None
    assert ext._decoder is None
    payload, rsv1 = ext.encode(b"abc" * 100)
    assert rsv1
    assert ext._encoder is None  # a fresh compressor for each message
    assert ext.decode(payload, final=True, max_length=None) == b"abc" * 100
    assert ext._decoder is None
    kept = PerMessageDeflate()
    kept.encode(b"abc" * 100)
    assert kept._encoder is not None


def test_traffic_counters_count_payload_bytes_before_compression() -> None:
    client, server = pair(DeflateOptions(min_size=0), DeflateOptions(min_size=0))
    data = client.send_text("é" * 1000) + client.send_bytes(b"x" * 500)
    data += client.send_fragment("ab", fin=False) + client.send_fragment("cd", fin=True)
    assert len(data) < 1000  # compressed on the wire...
    assert (client.messages_sent, client.bytes_sent) == (3, 2000 + 500 + 4)  # ...counted before
    assert len(server.receive_data(data)) == 3
    assert (server.messages_received, server.bytes_received) == (3, 2504)
    server.send_ping(b"p")  # control frames are not messages
    assert (server.messages_sent, server.bytes_sent) == (0, 0)
