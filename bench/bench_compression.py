"""permessage-deflate cost and ratio: echo of JSON-like text messages, trio_ws next to the websockets
library's trio server (and its asyncio server for reference), in one run.

    python -m bench.bench_compression            # 1 KiB and 64 KiB, compression on and off
    python -m bench.bench_compression --quick    # 1 repeat

Each server uses its own default compression settings; the load generator offers what browsers
offer (``permessage-deflate; client_max_window_bits``). Its frames are compressed before the clock
starts (with context takeover, in order), and it checks every echoed message by decoding it with
trio_ws's sans-I/O connection. Reported: messages/s with compression and without (the same
messages), the server's CPU time per message, and the ratio of compressed to raw bytes on the wire
from the server.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import sys
import time
import zlib

from trio_ws.protocol import Connection, PerMessageDeflate, Role, TextMessage, encode_frame

from .bench_echo import close, cpu_seconds, handshake, start_server

OFFER = "permessage-deflate; client_max_window_bits"
SERVERS = ["trio_ws", "websockets-trio", "websockets-asyncio"]
DISTINCT = 200  # distinct messages, cycled; repeats are far beyond any window, so they do not help


def json_messages(size: int, seed: int = 1) -> list[str]:
    """``DISTINCT`` JSON-like texts of exactly ``size`` characters: market ticks with varying values."""
    rng = random.Random(seed)
    out = []
    for n in range(DISTINCT):
        items: list[dict[str, object]] = []
        length = 0
        while length < size:
            item = {
                "seq": n * 10_000 + len(items),
                "symbol": rng.choice(["AAPL", "MSFT", "GOOG", "AMZN", "TSLA", "NVDA"]),
                "bid": round(rng.uniform(10, 1000), 2),
                "ask": round(rng.uniform(10, 1000), 2),
                "volume": rng.randrange(1, 10**6),
                "venue": rng.choice(["XNAS", "XNYS", "BATS"]),
                "ts": 1_700_000_000_000 + rng.randrange(10**9),
            }
            items.append(item)
            length += len(json.dumps(item)) + 2
        out.append(json.dumps(items)[:size])
    return out


def window_bits(head: bytes, name: str) -> int:
    m = re.search(rf"{name}=(\d+)".encode(), head)
    return int(m[1]) if m else 15


def run(port: int, size: int, count: int, in_flight: int, compress: bool) -> tuple[float, float, float]:
    """Echo ``count`` messages; return (messages/s, client CPU s, wire bytes from server / raw bytes)."""
    sock, head = handshake(port, OFFER if compress else None)
    negotiated = b"permessage-deflate" in head.lower()
    if negotiated is not compress:
        raise RuntimeError(f"compression negotiated: {negotiated}, wanted: {compress}\n{head.decode()}")
    messages = json_messages(size)
    mask = b"\x01\x02\x03\x04"
    extension = None
    frames = []
    if compress:
        bits = max(window_bits(head, "client_max_window_bits"), 9)
        compressor = zlib.compressobj(6, zlib.DEFLATED, -bits, 8)
        for i in range(count):
            data = compressor.compress(messages[i % DISTINCT].encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)
            frames.append(encode_frame(0x1, data[:-4], rsv1=True, mask=mask))
        extension = PerMessageDeflate(remote_max_window_bits=window_bits(head, "server_max_window_bits"))
    else:
        frames = [encode_frame(0x1, messages[i % DISTINCT].encode(), mask=mask) for i in range(count)]
    conn = Connection(Role.CLIENT, max_message_size=None, extension=extension)
    window = min(in_flight, count)
    sock.sendall(b"".join(frames[:window]))
    sent, done, wire = window, 0, 0
    cpu0 = time.process_time()
    start = time.perf_counter()
    while done < count:
        data = sock.recv(1 << 20)
        if not data:
            raise RuntimeError("server closed the connection")
        wire += len(data)
        events = conn.receive_data(data)
        for event in events:
            if not isinstance(event, TextMessage) or event.data != messages[done % DISTINCT]:
                raise RuntimeError(f"echo mismatch at message {done}")
            done += 1
        more = min(len(events), count - sent)
        if more:
            sock.sendall(b"".join(frames[sent : sent + more]))
            sent += more
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    close(sock)
    return count / elapsed, cpu, wire / (count * size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servers", nargs="*", default=SERVERS)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 repeat")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 1
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    cells = {1024: 20_000, 65536: 1_000}  # size -> messages per run
    rows = []
    port = 19765
    for name in args.servers:
        for size, count in cells.items():
            row: dict[str, float] = {}
            for compress in (True, False):
                rates, cpu_per_message, ratios = [], [], []
                for _ in range(args.repeats):
                    port += 1
                    proc = start_server(name, port, *(["deflate"] if compress else []))
                    try:
                        cpu_before = cpu_seconds(proc.pid)
                        rate, _, ratio = run(port, size, count, args.in_flight, compress)
                        cpu_per_message.append((cpu_seconds(proc.pid) - cpu_before) / count)
                    finally:
                        proc.kill()
                        proc.wait()
                    rates.append(rate)
                    ratios.append(ratio)
                key = "on" if compress else "off"
                row[f"rate_{key}"] = statistics.median(rates)
                row[f"cpu_{key}"] = statistics.median(cpu_per_message)
                row[f"ratio_{key}"] = statistics.median(ratios)
            print(f"  {name:20} {size:>6} B: {row}", file=sys.stderr)
            rows.append((name, size, row))
    print(
        f"\nEcho of JSON-like text, 1 connection, {args.in_flight} in flight, median of {args.repeats} "
        "runs; server on core 0, load generator on core 1. CPU: the server's, per message (µs).\n"
    )
    print("| server | size | msg/s compressed | msg/s plain | CPU µs compressed / plain | wire / raw |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, size, row in rows:
        print(
            f"| {name} | {size // 1024} KiB | {row['rate_on']:,.0f} | {row['rate_off']:,.0f} | "
            f"{row['cpu_on'] * 1e6:,.0f} / {row['cpu_off'] * 1e6:,.0f} | {row['ratio_on']:.3f} |"
        )


if __name__ == "__main__":
    main()
