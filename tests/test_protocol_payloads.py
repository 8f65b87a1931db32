"""Large payloads without needless copies: a binary frame that arrives in several reads is gathered
into one bytes object (the C speedup's ``PayloadBuffer``), data is parsed where it lies (a view of
a read buffer the caller reuses), and a frame is encoded in two parts (header, payload) for a
gathered write."""

from __future__ import annotations

import itertools
import os
import random

import pytest
from helpers import MASK, frame
from hypothesis import given
from hypothesis import strategies as st

import trio_ws.protocol._receiving as receiving
from trio_ws.protocol import (
    BytesMessage,
    Connection,
    MessageChunk,
    Role,
    TextMessage,
    apply_mask,
    encode_frame,
)
from trio_ws.protocol._frames import JOIN_BELOW, PayloadBuffer, encode_frame_parts

BINARY, TEXT, CONT = 2, 1, 0

requires_gather = pytest.mark.skipif(PayloadBuffer is None, reason="the C speedup is not built")


def test_the_c_speedup_here_gathers_payloads() -> None:
    """The test environment builds the extension (see test_writer.py), and this build of it has
    ``PayloadBuffer`` (an older build falls back to joining pieces: rebuild it, see protocol.md)."""
    assert PayloadBuffer is not None


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


@pytest.fixture(params=["gathered", "joined"])
def gathering(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test both with the C ``PayloadBuffer`` and without it (pieces joined at the end)."""
    if request.param == "gathered":
        if PayloadBuffer is None:
            pytest.skip("the C speedup is not built")
    else:
        monkeypatch.setattr(receiving, "PayloadBuffer", None)
    return str(request.param)


@given(st.integers(4096, 300_000), st.lists(st.integers(0, 400_000), max_size=12), st.booleans())
def test_a_large_binary_frame_in_any_reads_is_one_message(size: int, cuts: list[int], masked: bool) -> None:
    payload = os.urandom(size)
    mask = MASK if masked else None
    wire = frame(BINARY, payload, mask=mask) + frame(TEXT, b"after", mask=mask)
    conn = Connection(Role.SERVER if masked else Role.CLIENT, max_message_size=None)
    events: list[object] = []
    for piece in split(wire, cuts):
        events += conn.receive_data(piece)
    assert events == [BytesMessage(payload), TextMessage("after")]
    assert conn.buffered_bytes == 0


def test_both_ways_of_assembling_agree(gathering: str) -> None:
    """Fragments of large frames, each frame in several reads, read through one reused buffer."""
    rng = random.Random(7)
    payloads = [os.urandom(rng.randrange(4096, 200_000)) for _ in range(4)]
    wire = b"".join(
        frame(BINARY if i == 0 else CONT, p, fin=i == len(payloads) - 1) for i, p in enumerate(payloads)
    ) + frame(BINARY, payloads[0])
    conn = Connection(Role.SERVER, max_message_size=None)
    buffer = bytearray(65536)
    events: list[object] = []
    pos = 0
    while pos < len(wire):
        n = min(rng.randrange(1, 65537), len(wire) - pos)
        buffer[:n] = wire[pos : pos + n]
        events += conn.receive_data(memoryview(buffer)[:n])
        buffer[:] = b"\xff" * len(buffer)  # the caller reuses its buffer: nothing may point into it
        pos += n
    assert events == [BytesMessage(b"".join(payloads)), BytesMessage(payloads[0])]


def test_parsed_where_it_lies_only_the_start_of_a_header_is_kept() -> None:
    """A read that ends in the middle of a header: that part is copied (the buffer is reused), the
    rest of the read was parsed in place."""
    wire = frame(TEXT, b"one") + frame(BINARY, b"two" * 100)
    cut = len(frame(TEXT, b"one")) + 3  # one whole frame, then 3 bytes of the next header
    buffer = bytearray(wire[:cut])
    conn = Connection(Role.SERVER)
    assert conn.receive_data(memoryview(buffer)) == [TextMessage("one")]
    assert conn.buffered_bytes == 3
    buffer[:] = bytes(len(buffer))
    assert conn.receive_data(wire[cut:]) == [BytesMessage(b"two" * 100)]
    assert conn.buffered_bytes == 0


@requires_gather
def test_a_header_announcing_a_huge_frame_costs_what_arrived_not_what_it_announces() -> None:
    """The gathered payload grows with the bytes that came (doubling from 64 KiB), never to the
    announced size at once: 16 MiB announced and 10 bytes sent allocate 64 KiB; the connection
    counts the bytes received (for the server's budget), as it did with pieces."""
    assert PayloadBuffer is not None
    buffer = PayloadBuffer(1 << 24)
    buffer.add(bytes(10), MASK)
    assert buffer.capacity == 65536
    while buffer.filled < 1 << 24:
        buffer.add(bytes(min(65536, (1 << 24) - buffer.filled)), None)
        assert buffer.capacity <= max(2 * buffer.filled, 65536)
    conn = Connection(Role.SERVER, max_message_size=None)
    payload = os.urandom(1 << 24)
    wire = frame(BINARY, payload)
    assert conn.receive_data(wire[:24]) == []
    assert conn.buffered_bytes == 10
    pos = 24
    while pos + 65536 < len(wire):
        assert conn.receive_data(wire[pos : pos + 65536]) == []
        pos += 65536
        assert conn.buffered_bytes == pos - 14
    assert conn.receive_data(wire[pos:]) == [BytesMessage(payload)]
    assert conn.buffered_bytes == 0


@requires_gather
def test_a_text_frame_is_still_checked_as_it_comes() -> None:
    """Only binary frames are gathered: invalid UTF-8 in the first part of a large text frame
    fails the connection before the rest arrives (1007)."""
    conn = Connection(Role.SERVER)
    wire = frame(TEXT, b"\xff" + b"a" * 10000)
    assert conn.receive_data(wire[:100]) == []
    assert conn.failure is not None
    assert conn.failure.code == 1007


def test_a_gathered_frame_streams_as_one_chunk_per_frame(gathering: str) -> None:
    """receive_streaming() asked in the middle of a large binary frame: what came of the message
    before is the first chunk, the frame's payload (all of it) the next one."""
    first, second = os.urandom(10_000), os.urandom(150_000)
    wire = frame(BINARY, first, fin=False) + frame(CONT, second)
    conn = Connection(Role.SERVER, max_message_size=None)
    cut = len(frame(BINARY, first, fin=False)) + 30_000
    assert conn.receive_data(wire[:cut]) == []
    so_far = conn.stream_message()
    assert isinstance(so_far, bytes)
    events = conn.receive_data(wire[cut:])
    chunks = [e for e in events if isinstance(e, MessageChunk) and isinstance(e.data, bytes)]
    assert chunks == events
    assert chunks[-1].final
    assert so_far + b"".join(c.data for c in chunks) == first + second  # type: ignore[misc]
    if gathering == "gathered":  # the frame in progress is handed over whole, at its end
        assert so_far == first
        assert events == [MessageChunk(second, True)]


@requires_gather
def test_the_payload_buffer_unmasks_pieces_in_any_phase() -> None:
    assert PayloadBuffer is not None
    data = os.urandom(200_003)
    masked = apply_mask(data, MASK)
    for cuts in ([1, 2, 3], [70_001, 70_002], [5, 65536, 131_073], []):
        buffer = PayloadBuffer(len(data))
        for piece in split(masked, cuts):
            buffer.add(memoryview(piece), MASK)
        assert buffer.filled == len(data) == buffer.capacity
        out = buffer.take()
        assert type(out) is bytes
        assert out == data
        assert buffer.filled == 0
    plain = PayloadBuffer(3)
    plain.add(b"abc", None)
    assert plain.take() == b"abc"
    assert PayloadBuffer(0).take() == b""


@requires_gather
def test_the_payload_buffer_refuses_misuse() -> None:
    assert PayloadBuffer is not None
    buffer = PayloadBuffer(4)
    with pytest.raises(ValueError, match="more data"):
        buffer.add(b"12345", None)
    with pytest.raises(ValueError, match="4 bytes"):
        buffer.add(b"12", b"xy")
    buffer.add(b"12", None)
    with pytest.raises(ValueError, match="not complete"):
        buffer.take()
    with pytest.raises(ValueError, match=">= 0"):
        PayloadBuffer(-1)


@pytest.mark.parametrize("size", [0, 125, 126, JOIN_BELOW - 1, JOIN_BELOW, 65536, 70_000])
@pytest.mark.parametrize("mask", [None, MASK])
def test_a_frame_in_two_parts_is_the_frame(size: int, mask: bytes | None) -> None:
    payload = os.urandom(size)
    head, rest = encode_frame_parts(BINARY, payload, mask=mask)
    assert head + rest == encode_frame(BINARY, payload, mask=mask)
    assert (rest == b"") == (size < JOIN_BELOW)
    if mask is None and size >= JOIN_BELOW:
        assert rest is payload  # not copied


@pytest.mark.parametrize("size", [10, 100_000])
def test_send_parts_are_what_send_text_and_send_bytes_make(size: int) -> None:
    server, client = Connection(Role.SERVER), Connection(Role.CLIENT)
    text = "é" * size
    assert b"".join(server.send_text_parts(text)) == Connection(Role.SERVER).send_text(text)
    assert b"".join(server.send_bytes_parts(bytearray(size))) == encode_frame(BINARY, bytes(size))
    assert server.messages_sent == 2
    reader = Connection(Role.SERVER, max_message_size=None)
    wire = b"".join(client.send_text_parts(text)) + b"".join(client.send_bytes_parts(b"x"))
    events = reader.receive_data(wire)
    assert events == [TextMessage(text), BytesMessage(b"x")]  # a client's parts are masked
