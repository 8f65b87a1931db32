"""A Starlette application with a trio_ws router mounted at /ws, for hypercorn's trio worker
(tests/test_asgi_mount_hypercorn.py): ``hypercorn --worker-class trio asgi_mount_app:app``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from trio_ws import BearerToken, IsAuthenticated, Router, WebSocket, WebSocketDisconnect
from trio_ws.asgi import as_asgi

router = Router()
#: Where the handlers of /ws/watch hear of the close codes /ws/report saw.
watchers: set[trio.MemorySendChannel[str]] = set()


@router.websocket("/echo")
async def echo(ws: WebSocket) -> None:
    offered = ws.request.subprotocols if ws.request is not None else []
    await ws.accept(subprotocol="chat" if "chat" in offered else None, headers=[("x-mounted", "yes")])
    async for message in ws:
        if isinstance(message, str):
            await ws.send_text(message)
        else:
            await ws.send_bytes(message)


@router.websocket("/n/{n:int}")
async def number(ws: WebSocket, n: int) -> None:
    await ws.accept()
    request = ws.request
    assert request is not None
    await ws.send_json(
        {
            "n": n,
            "type": type(n).__name__,
            "path": ws.path,
            "route_path": request.route_path,
            "root_path": request.root_path,
            "client": list(ws.client or ()),
            "scheme": ws.url.scheme,
            "query": dict(ws.query_params),
        }
    )
    await ws.receive_text()


@router.websocket("/close")
async def close(ws: WebSocket) -> None:
    await ws.accept()
    await ws.receive_text()
    await ws.close(4002, "bye now")


@router.websocket("/watch")
async def watch(ws: WebSocket) -> None:
    await ws.accept()
    send, receive = trio.open_memory_channel[str](10)
    watchers.add(send)

    async def forward() -> None:
        async for code in receive:
            await ws.send_text(code)

    try:
        await ws.send_text("watching")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(forward)
            async for _ in ws:  # until the watcher goes
                pass
            nursery.cancel_scope.cancel()
    finally:
        watchers.discard(send)


@router.websocket("/report")
async def report(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            await ws.send_text(await ws.receive_text())
    except WebSocketDisconnect as exc:
        for watcher in list(watchers):
            watcher.send_nowait(f"{exc.code} {exc.reason}".strip())


def verify(token: str) -> str | None:
    return "alice" if token == "s3cret" else None


@router.websocket("/private", auth=[BearerToken(verify)], guards=[IsAuthenticated()])
async def private(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text(f"hello {ws.user}")
    await ws.receive_text()


@router.websocket("/boom")
async def boom(ws: WebSocket) -> None:
    await ws.accept()
    await ws.receive_text()
    raise RuntimeError("the handler failed")


ws_app = as_asgi(router)


async def homepage(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"home, {len(ws_app.server.connections)} websockets")


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with ws_app:  # leaving it closes every connection with 1001
        yield


app = Starlette(routes=[Route("/", homepage), Mount("/ws", app=ws_app)], lifespan=lifespan)
