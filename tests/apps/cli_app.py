"""Handlers for the command-line tests (run with the tests/apps directory as the working directory)."""

from __future__ import annotations

import os

from trio_ws import Router, WebSocket

router = Router()


@router.websocket("/pid")
async def pid(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text(str(os.getpid()))
    async for text in ws.iter_text():
        await ws.send_text(text)


not_a_handler = 42
