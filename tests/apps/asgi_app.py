"""ASGI applications for the command-line tests of ``--asgi`` (run from the tests/apps directory)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    print("lifespan: startup", file=sys.stderr, flush=True)
    yield {"pid": os.getpid()}
    print("lifespan: shutdown", file=sys.stderr, flush=True)


async def page(request: Request) -> Response:
    return JSONResponse(
        {"pid": request.state.pid, "path": request.url.path, "root_path": request.scope["root_path"]}
    )


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(str(websocket.state.pid))
    async for text in websocket.iter_text():
        await websocket.send_text(text)


app = Starlette(routes=[Route("/page", page), WebSocketRoute("/echo", echo)], lifespan=lifespan)


@contextlib.asynccontextmanager
async def no_database(app: Starlette) -> AsyncIterator[None]:
    raise ConnectionRefusedError("the database is not there")
    yield


failing = Starlette(lifespan=no_database)
