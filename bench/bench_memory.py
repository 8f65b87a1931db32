"""Memory per idle connection: 2,000 connections to each server, with compression off and on.

    python -m bench.bench_memory                 # 2,000 connections
    python -m bench.bench_memory --connections 500

For each server: the server's resident memory (``VmRSS``) is read after a warm-up connection, again
once every connection has finished its handshake ("connected"), and again after one 200-byte
JSON message went each way on every connection ("after a message": with compression, that is when
zlib's state exists). The difference divided by the number of connections is the cost of one idle
connection. The last column has compression negotiated but unused: the message each way is 16
bytes, sent uncompressed (trio_ws, like browsers, does not compress what is that short; a server
that compresses it anyway shows it).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import zlib
from pathlib import Path

from trio_ws.protocol import Connection, PerMessageDeflate, Role, TextMessage, encode_frame

from .bench_compression import window_bits
from .bench_echo import close, handshake, start_server

SERVERS = ["trio_ws", "trio-websocket", "websockets-trio", "websockets-asyncio"]
OFFER = "permessage-deflate; client_max_window_bits"
MESSAGE = json.dumps({"type": "update", "values": list(range(40)), "user": "someone"})[:200]
SHORT = "a short message."  # 16 bytes


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class Client:
    """One raw connection; sends and checks one message on demand."""

    def __init__(self, port: int, compress: bool) -> None:
        self.sock, head = handshake(port, OFFER if compress else None)
        self.compressed = b"permessage-deflate" in head.lower()
        extension = None
        if self.compressed:
            extension = PerMessageDeflate(remote_max_window_bits=window_bits(head, "server_max_window_bits"))
            self.bits = max(window_bits(head, "client_max_window_bits"), 9)
        self.conn = Connection(Role.CLIENT, max_message_size=None, extension=extension)

    def exchange(self, message: str = MESSAGE) -> None:
        data = message.encode()
        compress = self.compressed and message is MESSAGE
        if compress:
            compressor = zlib.compressobj(6, zlib.DEFLATED, -self.bits)
            data = (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
        self.sock.sendall(encode_frame(0x1, data, rsv1=compress, mask=b"\x05\x06\x07\x08"))
        events: list[object] = []
        while not events:
            events = list(self.conn.receive_data(self.sock.recv(65536)))
        if events != [TextMessage(message)]:
            raise RuntimeError(f"unexpected echo: {events}")


def measure(
    name: str, port: int, connections: int, compress: bool, message: str = MESSAGE
) -> tuple[float, float]:
    """KiB per connection: (connected, after ``message`` each way)."""
    proc = start_server(name, port, *(["deflate"] if compress else []))
    try:
        warm = Client(port, compress)
        warm.exchange(message)
        base = rss(proc.pid)
        clients = [Client(port, compress) for _ in range(connections)]
        for client in clients[-10:]:
            client.exchange(message)  # the server has taken every handshake before these echo
        connected = rss(proc.pid)
        for client in clients:
            client.exchange(message)
        after = rss(proc.pid)
        if compress and not all(c.compressed for c in clients):
            raise RuntimeError(f"{name} did not negotiate compression")
        for client in [warm, *clients]:
            close(client.sock)
    finally:
        proc.kill()
        proc.wait()
    return (connected - base) / connections / 1024, (after - base) / connections / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servers", nargs="*", default=SERVERS)
    parser.add_argument("--connections", type=int, default=2000)
    args = parser.parse_args()
    rows = []
    port = 20765
    for name in args.servers:
        cells = []
        for compress, message in ((False, MESSAGE), (True, MESSAGE), (True, SHORT)):
            if compress and name == "trio-websocket":
                cells.append("-")
                continue
            port += 1
            connected, after = measure(name, port, args.connections, compress, message)
            line = f"  {name:20} compress={compress} {len(message)} B: {connected:.1f} / {after:.1f} KiB"
            print(line, file=sys.stderr)
            cells.append(f"{connected:.1f} / {after:.1f}")
        rows.append((name, cells))
    print(
        f"\nServer memory (RSS) per connection, {args.connections:,} connections, in KiB: "
        "connected / after one message each way.\n"
    )
    print("| server | compression off | compression on | compression on, unused (16 B messages) |")
    print("| --- | --- | --- | --- |")
    for name, cells in rows:
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    main()
