"""Echo server: every message comes back as it was sent.

python examples/echo.py            # ws://127.0.0.1:8000/
"""

from __future__ import annotations

import argparse
import contextlib
import logging

import trio

from trio_ws import WebSocket, serve_websocket


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    while True:
        message = await ws.receive()  # raises WebSocketDisconnect when the client closes
        if isinstance(message, str):
            await ws.send_text(message)
        else:
            await ws.send_bytes(message)


async def main(host: str, port: int) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, echo, host, port)
        print(f"echo server listening on ws://{host}:{server.port}/  (Ctrl+C to stop)", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    # Ctrl+C cancels the server: a graceful shutdown (close 1001 to every client), then exit.
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main, args.host, args.port)
