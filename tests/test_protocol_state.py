"""The state machine's table (the failed state is a row of it), the transport-close policy, the
subprotocol choice, and the bounds on how a message may be cut into frames."""

from __future__ import annotations

import pytest
from helpers import frame

from trio_ws.protocol import (
    BytesMessage,
    Connection,
    ConnectionState,
    LocalProtocolError,
    PerMessageDeflate,
    Role,
    TextMessage,
    choose_subprotocol,
    encode_frame,
)
from trio_ws.protocol._pieces import Pieces
from trio_ws.protocol._state import next_state

TEXT, BINARY, CONT, CLOSE = 1, 2, 0, 8
S = ConnectionState


def state_of(conn: Connection) -> ConnectionState:
    return conn.state  # read afresh: mypy would keep an earlier narrowing


@pytest.mark.parametrize(
    ("state", "event", "after"),
    [
        (S.OPEN, "send_close", S.CLOSING),
        (S.OPEN, "receive_close", S.CLOSED),
        (S.CLOSING, "receive_close", S.CLOSED),
        (S.OPEN, "fail", S.FAILED),
        (S.CLOSING, "fail", S.FAILED),
        (S.FAILED, "send_close", S.CLOSED),
        (S.FAILED, "end_of_stream", S.CLOSED),
        (S.CLOSED, "end_of_stream", S.CLOSED),
    ],
)
def test_the_table_allows_these_moves(state: ConnectionState, event: str, after: ConnectionState) -> None:
    assert next_state(state, event) is after


@pytest.mark.parametrize(
    ("state", "event"),
    [(S.CLOSED, "send_close"), (S.CLOSED, "fail"), (S.FAILED, "fail"), (S.CLOSING, "send_close")],
)
def test_a_move_outside_the_table_raises(state: ConnectionState, event: str) -> None:
    with pytest.raises(LocalProtocolError, match=f"cannot {event}"):
        next_state(state, event)


def test_a_failed_connection_discards_input_but_may_still_answer_and_then_close() -> None:
    conn = Connection(Role.SERVER)
    conn.receive_data(frame(TEXT, b"ok") + frame(9, b"x" * 200, fin=True))  # control frame > 125
    assert conn.state is S.FAILED
    assert conn.receive_data(frame(TEXT, b"ignored")) == []  # §7.1.7: everything after is dropped
    conn.send_text("the answer to the message before")  # still allowed
    conn.send_close(1002)
    assert state_of(conn) is S.CLOSED
    with pytest.raises(LocalProtocolError):
        conn.send_text("after the close")


def test_the_server_closes_the_transport_first_the_client_waits_for_it() -> None:
    server = Connection(Role.SERVER)
    client = Connection(Role.CLIENT)
    assert not server.may_close_transport and not client.may_close_transport
    server.receive_data(client.send_close(1000))
    assert server.state is S.CLOSED and server.may_close_transport  # at once (RFC 6455 §7.1.1)
    client.receive_data(server.data_to_send())
    assert client.state is S.CLOSED and not client.may_close_transport  # waits for the server's FIN
    client.receive_data(b"")
    assert client.may_close_transport


def test_a_client_that_failed_closes_the_transport_itself() -> None:
    client = Connection(Role.CLIENT)
    client.receive_data(encode_frame(TEXT, b"x", mask=b"abcd"))  # a masked frame from the server
    assert client.state is S.FAILED
    client.send_close(1002)
    assert client.may_close_transport


def test_choose_subprotocol() -> None:
    assert choose_subprotocol(["b", "a"], ["a", "b"]) == "b"  # the client's preference wins
    assert choose_subprotocol(["x"], ["a"]) is None
    assert choose_subprotocol(["x", "y"], [], "y") == "y"
    with pytest.raises(ValueError, match="did not offer"):
        choose_subprotocol(["x"], ["z"], "z")


def test_a_million_one_byte_fragments_are_refused_like_a_message_too_big() -> None:
    conn = Connection(Role.SERVER, max_message_size=2**20)
    wire = frame(BINARY, b"a", fin=False) + frame(CONT, b"b", fin=False) * 70_000
    conn.receive_data(wire)
    assert conn.state is S.FAILED
    assert conn.failure is not None and conn.failure.code == 1009
    assert "fragments" in conn.failure.reason


def test_empty_fragments_are_counted_too() -> None:
    conn = Connection(Role.SERVER, max_message_size=1000)  # at most 64 frames
    conn.receive_data(frame(TEXT, b"", fin=False) + frame(CONT, b"", fin=False) * 63)
    assert state_of(conn) is S.OPEN
    conn.receive_data(frame(CONT, b"", fin=False))
    assert conn.failure is not None and conn.failure.code == 1009


def test_a_fragmented_message_within_the_bounds_is_whole() -> None:
    conn = Connection(Role.SERVER, max_message_size=2**20)
    pieces = [bytes([i % 256]) * (i % 7) for i in range(5000)]
    wire = frame(BINARY, pieces[0], fin=False)
    wire += b"".join(frame(CONT, p, fin=False) for p in pieces[1:-1]) + frame(CONT, pieces[-1])
    assert conn.receive_data(wire) == [BytesMessage(b"".join(pieces))]
    text = ["é" * (i % 3) + "x" for i in range(3000)]
    raw = [t.encode() for t in text]
    wire = frame(TEXT, raw[0], fin=False) + b"".join(frame(CONT, r, fin=False) for r in raw[1:-1])
    assert conn.receive_data(wire + frame(CONT, raw[-1])) == [TextMessage("".join(text))]


def test_pieces_keep_few_objects_for_many_small_fragments() -> None:
    pieces = Pieces(b"")
    for _ in range(64_000):
        pieces.add(b"x")
    assert pieces.objects <= 1000  # (not 64,000)
    pieces.add(b"y" * 10_000)
    assert pieces.join() == b"x" * 64_000 + b"y" * 10_000


def test_a_compressed_frame_declaring_more_than_the_limit_can_decode_to_is_refused_at_once() -> None:
    conn = Connection(Role.SERVER, max_message_size=2**20, extension=PerMessageDeflate())
    conn.receive_data(frame(BINARY, b"", rsv=4, length=2**62))  # only the header: not read for ever
    assert conn.failure is not None and conn.failure.code == 1009


def test_a_frame_kept_alive_by_the_garbage_collector_does_not_pin_the_buffer() -> None:
    """The garbage collector may run inside the parser (and an object it collects may warn, which
    keeps the frames of that moment in a traceback): no slice of the receive buffer may outlive its
    use, or the next ``receive_data`` could not shrink the buffer (``BufferError``)."""
    import gc
    import sys

    kept: list[object] = []

    def keep_frames(phase: str, info: dict[str, int]) -> None:
        frame = sys._getframe()
        while frame is not None:
            kept.append(frame)
            frame = frame.f_back  # type: ignore[assignment]

    conn = Connection(Role.SERVER)
    threshold = gc.get_threshold()
    gc.callbacks.append(keep_frames)
    gc.set_threshold(1)
    try:
        wire = (frame(9, b"p" * 125) + frame(TEXT, b"x" * 300) + frame(BINARY, b"")) * 50
        for i in range(0, len(wire), 777):
            conn.receive_data(wire[i : i + 777])
    finally:
        gc.callbacks.remove(keep_frames)
        gc.set_threshold(*threshold)
    assert kept  # the collector did run in there
    assert conn.failure is None


def test_an_unfinished_message_of_tiny_fragments_holds_about_its_size() -> None:
    """60,000 one-byte fragments of an unfinished binary message: about 60 KB held, not an object
    per fragment (before: 2.4 MB for these, 40 MiB for a million)."""
    import tracemalloc

    wire = frame(BINARY, b"a", fin=False) + frame(CONT, b"b", fin=False) * 60_000
    conn = Connection(Role.SERVER, max_message_size=2**20)
    tracemalloc.start()
    try:
        conn.receive_data(wire)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert conn.failure is None
    assert held < 400_000
    assert 60_000 <= conn.buffered_bytes < 70_000
