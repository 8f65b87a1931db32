"""A process holding presence members, for tests/test_presence_redis.py to kill: two members of
room "r" (one of them also in room "s") on a hub with RedisBackend(REDIS_URL) and a short ttl.
Prints their client ids as one JSON line once they are in, then waits to be killed."""

from __future__ import annotations

import json
import os
import sys

import trio

from trio_ws import Handler, Hub, RedisBackend, WebSocket
from trio_ws.testing import TestClient, open_test_client

TTL = float(os.environ.get("PRESENCE_TTL", "1.0"))
hub = Hub(RedisBackend(os.environ["REDIS_URL"], presence_ttl=TTL, presence_interval=TTL / 5), join_leave=True)


def member(*rooms: str, user: str) -> Handler:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        async with hub.subscribe(ws, *rooms, info={"user": user, "pid": os.getpid()}):
            await ws.send_text(hub.client_id(ws) or "")
            await ws.receive_text()

    return handler


async def client_id(client: TestClient) -> str:
    while True:  # the join notices may come first
        text = await client.receive_text(timeout=10)
        if not text.startswith("{"):
            return text


async def main() -> None:
    async with (
        hub,
        open_test_client(member("r", "s", user="dan")) as dan,
        open_test_client(member("r", user="eve")) as eve,
    ):
        ids = {"dan": await client_id(dan), "eve": await client_id(eve)}
        print(json.dumps(ids), flush=True)
        print(f"trio_ws from {sys.modules['trio_ws'].__file__}", file=sys.stderr, flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main)
