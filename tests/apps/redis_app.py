"""A chat router on a hub with the Redis backend (REDIS_URL), for tests/test_redis.py: run by the
command line, once per process or with --workers."""

from __future__ import annotations

import os

import trio

from trio_ws import Hub, RedisBackend, Router, WebSocket

backend = RedisBackend(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
hub = Hub(backend)
router = Router()


@router.websocket("/rooms/{room}")
async def room_handler(ws: WebSocket, room: str) -> None:
    await ws.accept()
    async with hub.subscribe(ws, room):
        with trio.fail_after(10):
            await backend.ready.wait()
        await ws.send_json({"joined": room, "pid": os.getpid()})
        async for text in ws.iter_text():
            await hub.publish(room, {"text": text, "pid": os.getpid()})
