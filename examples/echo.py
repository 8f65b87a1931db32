"""Echo server: every message comes back as it was sent.

    python examples/echo.py                  # ws://127.0.0.1:8000/
    python examples/echo.py --port 9000

Ctrl+C (SIGINT) or SIGTERM shuts down gracefully: every client gets close code 1001, bounded by the
close timeout. A second signal stops at once.
"""

from __future__ import annotations

import argparse
import logging
import signal

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
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_websocket, echo, host, port)
            print(f"echo server listening on ws://{host}:{server.port}/  (Ctrl+C to stop)", flush=True)
            async for _ in signals:
                print("shutting down: closing every connection with 1001", flush=True)
                nursery.cancel_scope.cancel()  # cancelling serve_websocket is the graceful shutdown
                break
            else:  # pragma: no cover - the signal iterator never ends by itself
                return
            # A second signal while shutting down: stop at once.
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    trio.run(main, args.host, args.port)
