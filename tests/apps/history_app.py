"""A room with history and the offset envelope on a hub with the Redis backend (REDIS_URL), for
tests/test_history.py: a client joins ``/rooms/{room}``, with ``?offset=&epoch=`` when it comes back,
and is sent what it missed, then the live messages."""

from __future__ import annotations

import os

from trio_ws import Hub, RedisBackend, Router, StreamPosition, WebSocket

backend = RedisBackend(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
hub = Hub(backend, history_size=1000, envelope=True)
router = Router()


@router.websocket("/rooms/{room}")
async def room_handler(ws: WebSocket, room: str) -> None:
    await ws.accept()
    since = StreamPosition.from_client(ws.query_params.get("offset"), ws.query_params.get("epoch"))
    # The first join starts the hub's listener (a hub made at module level) and waits for its room.
    async with hub.subscribe(ws, room, since=since):
        async for _ in ws.iter_text():
            pass
