"""Sans-I/O throughput: unmasking, and parsing masked client frames on the server side.

Ours next to wsproto and the websockets library's sans-I/O ``Protocol`` (which unmasks with its C
extension when it is built, as it is from PyPI wheels), in one run:

    python -m bench.bench_protocol            # prints a markdown table

Each cell is the best of 5 repeats of parsing the same stream of frames (MB/s of payload).
"""

from __future__ import annotations

import argparse
import functools
import os
import time
from collections.abc import Callable

import trio_ws.protocol._frames as frames_module
from trio_ws.protocol import SPEEDUPS, Connection, Role, apply_mask, encode_frame
from trio_ws.protocol._frames import py_apply_mask

MASK = os.urandom(4)


def best_rate(run: Callable[[], object], payload_bytes: int, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return payload_bytes / best / 1e6


def _repeat(unmask: Callable[[bytes], object], data: bytes, count: int) -> None:
    for _ in range(count):
        unmask(data)


def stream_of(size: int, total: int) -> tuple[bytes, int]:
    count = max(1, total // size)
    payload = os.urandom(size)
    return encode_frame(0x2, payload, mask=MASK) * count, count * size


def parse_ours(wire: bytes, chunk: int, fast: bool = True) -> Callable[[], object]:
    """trio_ws's parser; ``fast=False``: without the C fast path of whole one-frame messages."""

    def run() -> object:
        saved = frames_module.parse_messages
        frames_module.parse_messages = saved if fast else None
        try:
            conn = Connection(Role.SERVER, max_message_size=None)
            n = 0
            for i in range(0, len(wire), chunk):
                n += len(conn.receive_data(wire[i : i + chunk]))
            return n
        finally:
            frames_module.parse_messages = saved

    return run


def parse_wsproto(wire: bytes, chunk: int) -> Callable[[], object]:
    from wsproto.frame_protocol import FrameProtocol

    def run() -> object:
        proto = FrameProtocol(client=False, extensions=[])
        n = 0
        for i in range(0, len(wire), chunk):
            proto.receive_bytes(wire[i : i + chunk])
            for _ in proto.received_frames():
                n += 1
        return n

    return run


def parse_websockets(wire: bytes, chunk: int) -> Callable[[], object]:
    from websockets.protocol import Protocol, Side

    def run() -> object:
        proto = Protocol(Side.SERVER, max_size=None)
        n = 0
        for i in range(0, len(wire), chunk):
            proto.receive_data(wire[i : i + chunk])
            n += len(proto.events_received())
        return n

    return run


def unmaskers() -> dict[str, Callable[[bytes], object]]:
    from websockets.utils import apply_mask as websockets_python
    from wsproto.frame_protocol import XorMaskerSimple

    found: dict[str, Callable[[bytes], object]] = {
        "trio_ws" + (" (C speedup)" if SPEEDUPS else ""): lambda data: apply_mask(data, MASK),
        "trio_ws (pure Python)": lambda data: py_apply_mask(data, MASK),
        "wsproto": lambda data: XorMaskerSimple(MASK).process(bytearray(data)),
        "websockets (pure Python)": lambda data: websockets_python(data, MASK),
    }
    try:
        from websockets.speedups import apply_mask as websockets_c

        found["websockets (C speedups)"] = lambda data: websockets_c(data, MASK)
    except ImportError:  # pragma: no cover - wheels ship it
        pass
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--total", type=int, default=32 * 2**20, help="payload bytes per run")
    args = parser.parse_args()
    sizes = {"1 KiB": 1024, "1 MiB": 2**20}

    print("Unmasking (MB/s)\n")
    print("| implementation | " + " | ".join(sizes) + " |")
    print("| --- |" + " --- |" * len(sizes))
    for name, unmask in unmaskers().items():
        cells = []
        for size in sizes.values():
            data = os.urandom(size)
            count = max(1, args.total // size // 4)
            rate = best_rate(functools.partial(_repeat, unmask, data, count), count * size)
            cells.append(f"{rate:,.0f}")
        print(f"| {name} | " + " | ".join(cells) + " |")

    print("\nParsing masked binary frames on the server, fed in 64 KiB reads (MB/s)\n")
    sizes = {"16 B": 16, **sizes}
    parsers: dict[str, Callable[[bytes, int], Callable[[], object]]] = {
        "trio_ws": parse_ours,
        "trio_ws (no C fast path)": functools.partial(parse_ours, fast=False),
        "wsproto": parse_wsproto,
        "websockets": parse_websockets,
    }
    print("| implementation | " + " | ".join(sizes) + " | trio_ws ÷ this (" + " / ".join(sizes) + ") |")
    print("| --- |" + " --- |" * len(sizes) + " --- |")
    rates: dict[str, list[float]] = {}
    for name, make in parsers.items():
        rates[name] = []
        for size in sizes.values():
            wire, payload = stream_of(size, min(args.total, size * 200_000))
            rates[name].append(best_rate(make(wire, 65536), payload))
    for name, row in rates.items():
        ratio = " / ".join(f"{ours / theirs:.2f}" for ours, theirs in zip(rates["trio_ws"], row, strict=True))
        print(f"| {name} | " + " | ".join(f"{r:,.0f}" for r in row) + f" | {ratio} |")


if __name__ == "__main__":
    main()
