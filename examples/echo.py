"""Echo server: every message comes back as it was sent.

    python examples/echo.py                  # ws://127.0.0.1:8000
    python examples/echo.py --port 9000

Ctrl+C (SIGINT) or SIGTERM shuts down gracefully: every client gets close code 1001, bounded by the
close timeout. A second signal stops at once. A port in use is one line on stderr, and exit status 1.
"""

from __future__ import annotations

import argparse

import trio_ws
from trio_ws import WebSocket


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    while True:
        message = await ws.receive()  # raises WebSocketDisconnect when the client closes
        if isinstance(message, str):
            await ws.send_text(message)
        else:
            await ws.send_bytes(message)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    trio_ws.run(echo, args.host, args.port)  # says where it listens; Ctrl+C closes clients with 1001
