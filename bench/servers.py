"""Echo servers for the benchmarks, one per implementation: ``python -m bench.servers NAME PORT [deflate]``.

Prints ``READY`` once listening. The ``starlette-*`` servers run the same Starlette WebSocket echo
on an ASGI server: trio_ws's (``trio_ws.asgi``), hypercorn's trio worker, uvicorn (not in the
default run: ``python -m bench.bench_echo --servers starlette-trio_ws starlette-hypercorn-trio
starlette-uvicorn``). Keepalive pings are off everywhere, and so is compression unless
``deflate`` is given (then each server uses its own default permessage-deflate settings), so every
server does the same work.
"""

from __future__ import annotations

import sys
from typing import Any

import trio

MAX_SIZE = 2**24


async def run_trio_ws(port: int, deflate: bool) -> None:
    from trio_ws import WebSocket, serve_websocket

    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        while True:
            message = await ws.receive()
            if isinstance(message, str):
                await ws.send_text(message)
            else:
                await ws.send_bytes(message)

    await serve_until_ready(serve_websocket, echo, port, deflate)


async def serve_until_ready(serve: Any, app: Any, port: int, deflate: bool) -> None:
    """``serve(app, ...)`` (trio_ws's ``serve_websocket`` or ``serve_asgi``) with the benchmark's
    settings, printing ``READY`` once it listens."""
    from trio_ws import DeflateOptions

    async def started(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await serve(
            app,
            "127.0.0.1",
            port,
            max_message_size=MAX_SIZE,
            ping_interval=None,
            compression=DeflateOptions() if deflate else None,
            task_status=task_status,
        )

    async with trio.open_nursery() as nursery:
        await nursery.start(started)
        print("READY", flush=True)


async def run_trio_websocket(port: int, deflate: bool) -> None:
    if deflate:
        raise SystemExit("trio-websocket has no permessage-deflate")
    from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

    async def echo(request: WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_websocket(
                echo,
                "127.0.0.1",
                port,
                ssl_context=None,
                max_message_size=MAX_SIZE,
                task_status=task_status,
            )
        )
        print("READY", flush=True)


async def run_websockets_trio(port: int, deflate: bool) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.trio.server import ServerConnection, serve

    async def echo(ws: ServerConnection) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve(
                echo,
                port,
                host="127.0.0.1",
                compression="deflate" if deflate else None,
                ping_interval=None,
                max_size=MAX_SIZE,
                task_status=task_status,
            )
        )
        print("READY", flush=True)


def run_websockets_asyncio(port: int, deflate: bool) -> None:
    import asyncio

    from websockets.asyncio.server import ServerConnection, serve

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        async with serve(
            echo,
            "127.0.0.1",
            port,
            compression="deflate" if deflate else None,
            ping_interval=None,
            max_size=MAX_SIZE,
        ) as server:
            print("READY", flush=True)
            await server.serve_forever()

    asyncio.run(main())


def run_picows(port: int, deflate: bool) -> None:
    """picows (Cython, on uvloop): it hands over frames, not messages, which is all the load
    generator sends (one unfragmented frame per message)."""
    if deflate:
        raise SystemExit("picows has no permessage-deflate")

    import uvloop
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

    class Echo(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
                transport.send(frame.msg_type, frame.get_payload_as_memoryview())

    def listener(request: WSUpgradeRequest) -> Echo:
        return Echo()

    async def main() -> None:
        server = await ws_create_server(listener, "127.0.0.1", port, max_frame_size=MAX_SIZE)
        print("READY", flush=True)
        await server.serve_forever()

    uvloop.run(main())


def starlette_echo() -> Any:
    """A Starlette application whose WebSocket route at ``/`` echoes every message."""
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            else:
                await websocket.send_bytes(message["bytes"])

    return Starlette(routes=[WebSocketRoute("/", echo)])


async def run_starlette_trio_ws(port: int, deflate: bool) -> None:
    from trio_ws.asgi import serve_asgi

    await serve_until_ready(serve_asgi, starlette_echo(), port, deflate)


async def run_starlette_hypercorn_trio(port: int, deflate: bool) -> None:
    from hypercorn.config import Config
    from hypercorn.trio import serve

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.websocket_max_message_size = MAX_SIZE
    config.websocket_ping_interval = None
    config.accesslog = None
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: serve(starlette_echo(), config, task_status=task_status))
        print("READY", flush=True)


def run_starlette_uvicorn(port: int, deflate: bool) -> None:
    import threading
    import time

    import uvicorn

    config = uvicorn.Config(
        starlette_echo(),
        host="127.0.0.1",
        port=port,
        ws_max_size=MAX_SIZE,
        ws_ping_interval=None,
        ws_per_message_deflate=deflate,
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)

    def ready() -> None:
        while not server.started:
            time.sleep(0.01)
        print("READY", flush=True)

    threading.Thread(target=ready, daemon=True).start()
    server.run()


TRIO_SERVERS = {
    "trio_ws": run_trio_ws,
    "trio-websocket": run_trio_websocket,
    "websockets-trio": run_websockets_trio,
    "starlette-trio_ws": run_starlette_trio_ws,
    "starlette-hypercorn-trio": run_starlette_hypercorn_trio,
}
NAMES = ["trio_ws", "trio-websocket", "websockets-trio", "websockets-asyncio", "picows"]
ASGI_NAMES = ["starlette-trio_ws", "starlette-hypercorn-trio", "starlette-uvicorn"]

if __name__ == "__main__":
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # as many connections as the system allows
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    name, port = sys.argv[1], int(sys.argv[2])
    deflate = sys.argv[3:] == ["deflate"]
    if name == "websockets-asyncio":
        run_websockets_asyncio(port, deflate)
    elif name == "picows":
        run_picows(port, deflate)
    elif name == "starlette-uvicorn":
        run_starlette_uvicorn(port, deflate)
    else:
        trio.run(TRIO_SERVERS[name], port, deflate)
