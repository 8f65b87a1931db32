"""The receiving side's C fast path (``parse_messages`` of the speedup): the whole one-frame text
and binary messages at the start of a buffer become events in C, and everything else is left to
the Python parser. For any frames, valid or not, cut into any reads, a connection with the fast
path and one without it give the same events, the same failure, the same replies and counters."""

from __future__ import annotations

import itertools

import pytest
from helpers import frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trio_ws.protocol._frames as frames_module
from trio_ws.protocol import BytesMessage, Connection, PerMessageDeflate, Role, TextMessage
from trio_ws.protocol._frames import parse_messages

requires_fast_path = pytest.mark.skipif(parse_messages is None, reason="the C speedup is not built")
MASK = b"\x01\x80\xfe\x7f"


def test_the_c_speedup_here_parses_messages() -> None:
    """The test environment builds the extension (see test_writer.py), with ``parse_messages``."""
    assert parse_messages is not None


@st.composite
def a_frame(draw: st.DrawFn, masked: bool) -> bytes:
    opcode = draw(st.sampled_from([0, 1, 1, 1, 2, 2, 2, 3, 8, 9, 10, 11]))
    if opcode == 1 and draw(st.booleans()):
        payload = draw(st.text(max_size=40)).encode()
        if draw(st.integers(0, 9)) == 0:  # invalid UTF-8 somewhere, or a character cut short
            payload += draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xe2\x82"]))
    elif opcode == 8 and draw(st.booleans()):
        payload = draw(st.sampled_from([b"\x03\xe8", b"\x03\xe8bye", b"\x00", b"\x03\xe8\xff"]))
    else:
        payload = draw(st.binary(max_size=draw(st.sampled_from([20, 130, 300]))))
    fin = draw(st.integers(0, 5)) > 0
    rsv = 0 if draw(st.integers(0, 9)) else draw(st.integers(1, 7))
    # The length in a longer encoding than it needs now and then (16 or 64 bits for a short one).
    wide = draw(st.sampled_from([None, None, None, 126, 65536]))
    mask = MASK if masked != (draw(st.integers(0, 30)) == 0) else None  # now and then wrongly masked
    wire = frame(opcode, payload, fin=fin, rsv=rsv, mask=mask)
    if wide is not None and len(payload) < 126:
        head = frame(opcode, b"", fin=fin, rsv=rsv, mask=None, length=wide)
        length = len(payload).to_bytes(2 if wide == 126 else 8, "big")
        mbit = 0x80 if mask is not None else 0
        wire = head[:1] + bytes([head[1] | mbit]) + length + wire[2:]
    return wire


def feed(conn: Connection, reads: list[bytes], fast: bool, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Feed ``reads``; what the connection did, as comparable values."""
    monkeypatch.setattr(frames_module, "parse_messages", parse_messages if fast else None)
    events: list[object] = []
    for data in reads:
        events += conn.receive_data(bytearray(data))  # (a buffer its caller reuses)
    failure = conn.failure and (conn.failure.code, conn.failure.reason)
    # The replies (pongs, the close), as the peer reads them: a client masks each with a new key.
    peer = Connection(Role.CLIENT if conn.role is Role.SERVER else Role.SERVER, max_message_size=None)
    replies = peer.receive_data(conn.data_to_send())
    return [events, failure, conn.state, replies, conn.messages_received, conn.bytes_received]


def cut(wire: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({p % (len(wire) + 1) for p in points} | {0, len(wire)})
    return [wire[a:b] for a, b in itertools.pairwise(edges) if b > a]


@requires_fast_path
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_with_and_without_the_fast_path_a_connection_does_the_same(
    data: st.DataObject, monkeypatch: pytest.MonkeyPatch
) -> None:
    role = data.draw(st.sampled_from([Role.SERVER, Role.CLIENT]))
    limit = data.draw(st.sampled_from([None, 2**20, 100, 10, 0]))
    deflate = data.draw(st.booleans())
    wire = b"".join(data.draw(st.lists(a_frame(role is Role.SERVER), max_size=12)))
    reads = cut(wire, data.draw(st.lists(st.integers(0, 5000), max_size=6)))
    results = []
    for fast in (True, False):
        extension = PerMessageDeflate() if deflate else None
        conn = Connection(role, max_message_size=limit, extension=extension)
        results.append(feed(conn, reads, fast, monkeypatch))
    assert results[0] == results[1]


@requires_fast_path
def test_messages_made_in_c_are_the_events_python_makes() -> None:
    """Equal, hashable alike, of the exact classes, with the payload unmasked (every length
    encoding, masked and not)."""
    payloads = [b"", b"x", bytes(range(256)) * 3, b"y" * 70_000]
    for role, mask in ((Role.SERVER, MASK), (Role.CLIENT, None)):
        text = "é€😀".encode()
        wire = b"".join(frame(2, p, mask=mask) + frame(1, text * len(p), mask=mask) for p in payloads)
        conn = Connection(role, max_message_size=None)
        events = conn.receive_data(wire)
        expected: list[object] = []
        for p in payloads:
            expected += [BytesMessage(p), TextMessage("é€😀" * len(p))]
        assert events == expected
        assert [type(e) for e in events] == [type(e) for e in expected]
        assert {hash(e) for e in events} == {hash(e) for e in expected}
        assert conn.messages_received == 8
        assert conn.bytes_received == sum(len(p) * 10 for p in payloads)


@requires_fast_path
@pytest.mark.parametrize(
    ("stop_at", "reason"),
    [
        (frame(1, b"\xff"), "invalid UTF-8"),
        (frame(2, b"x" * 11), "over the limit"),
        (frame(2, b"x", mask=None), "unmasked from a client"),
        (frame(2, b"x", rsv=4), "a reserved bit"),
        (frame(2, b"x", fin=False), "a fragment"),
        (frame(9, b"p"), "a control frame"),
        (frame(2, b"x" * 5)[:-1], "incomplete"),
    ],
)
def test_the_fast_path_stops_at_the_first_frame_it_does_not_make(stop_at: bytes, reason: str) -> None:
    assert parse_messages is not None
    after = b"" if reason == "incomplete" else frame(2, b"after")
    buf = frame(2, b"a") + frame(1, b"b") + stop_at + after
    events: list[object] = []
    pos, count, size = parse_messages(buf, 0, True, 10, events, TextMessage, BytesMessage)
    assert (pos, count, size) == (len(frame(2, b"a")) * 2, 2, 2), reason
    assert events == [BytesMessage(b"a"), TextMessage("b")]
