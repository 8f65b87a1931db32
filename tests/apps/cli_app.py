"""Handlers for the command-line tests (run with the tests/apps directory as the working directory)."""

from __future__ import annotations

import os

import trio

from trio_ws import HTTPResponse, Request, Router, WebSocket

router = Router()


@router.websocket("/pid")
async def pid(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text(str(os.getpid()))
    async for text in ws.iter_text():
        await ws.send_text(text)


@router.websocket("/client")
async def client(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text(ws.client[0] if ws.client else "-")


@router.websocket("/path")
async def path(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text(ws.path)


def make_router() -> Router:
    """A factory (--factory)."""
    return router


def make_nothing() -> int:
    return 42


async def health(request: Request) -> HTTPResponse | None:
    """An HTTP hook (--http-hook): a health check; everything else goes on to the handshake."""
    await trio.lowlevel.checkpoint()
    if request.path == "/health":
        return HTTPResponse(200, f"ok {request.target}\n")
    return None


def not_async(request: Request) -> None:
    return None


not_a_handler = 42
