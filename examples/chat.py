"""Chat with rooms, and the browser page that talks to it, served by the same server.

    python examples/chat.py                  # then open http://127.0.0.1:8000/ in two browser tabs
    python examples/chat.py --port 9000

The page (``GET /``, answered by the HTTP hook) opens ``ws://<host>/ws/<room>?name=<name>``; every
message goes to everyone in the room through a :class:`~trio_ws.Hub`. ``?room=`` and ``?name=`` on the
page's URL pick them. ``--redis redis://127.0.0.1:6379/0`` puts the rooms in Redis, so that several
chat processes share them. Ctrl+C shuts down gracefully (close 1001 to everyone); a second Ctrl+C
stops at once.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import trio

from trio_ws import HTTPResponse, Hub, Overflow, RedisBackend, Request, Router, WebSocket, serve_websocket

router = Router()
#: Rooms: each member has its own bounded queue, so a slow browser never holds up the room.
hub = Hub(queue_size=100, overflow=Overflow.DROP_OLDEST)


@router.websocket("/ws/{room}")
async def chat(ws: WebSocket, room: str) -> None:
    name = (ws.query_params.get("name") or "guest")[:32]
    await ws.accept()
    try:
        async with hub.subscribe(ws, room):  # leaves the room however the connection ends
            await hub.publish(room, {"from": "server", "text": f"{name} joined {room}"})
            async for text in ws.iter_text():
                await hub.publish(room, {"from": name, "text": text[:2000]})
    finally:
        with trio.CancelScope(shield=True):
            await hub.publish(room, {"from": "server", "text": f"{name} left"})


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>trio_ws chat</title>
<style>
  body { font: 16px system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
  #log { border: 1px solid #ccc; border-radius: 6px; height: 20rem; overflow-y: auto; padding: .5rem; }
  #log p { margin: .2rem 0; }
  .server { color: #777; font-style: italic; }
  form { display: flex; gap: .5rem; margin-top: .5rem; }
  #text { flex: 1; padding: .4rem; }
  #status { color: #555; font-size: .85rem; }
</style>
</head>
<body>
<h1>Room <span id="room"></span></h1>
<p id="status">connecting…</p>
<div id="log"></div>
<form id="form"><input id="text" autocomplete="off" placeholder="Say something"><button>Send</button></form>
<script>
const params = new URLSearchParams(location.search);
const room = params.get("room") || "lobby";
const name = params.get("name") || "guest-" + Math.floor(Math.random() * 1000);
document.getElementById("room").textContent = room;
const scheme = location.protocol === "https:" ? "wss" : "ws";
const url = `${scheme}://${location.host}/ws/${encodeURIComponent(room)}?name=${encodeURIComponent(name)}`;
const ws = new WebSocket(url);
const status = document.getElementById("status");
const log = document.getElementById("log");
ws.onopen = () => {
  status.textContent = `connected as ${name}; extensions: ${ws.extensions || "none"}`;
  status.dataset.state = "open";
};
ws.onclose = (event) => { status.textContent = `closed (${event.code})`; status.dataset.state = "closed"; };
ws.onmessage = (event) => {
  const message = JSON.parse(event.data);
  const line = document.createElement("p");
  if (message.from === "server") line.className = "server";
  line.textContent = message.from === "server" ? message.text : `${message.from}: ${message.text}`;
  log.appendChild(line);
  log.scrollTop = log.scrollHeight;
};
document.getElementById("form").onsubmit = (event) => {
  event.preventDefault();
  const input = document.getElementById("text");
  if (input.value && ws.readyState === WebSocket.OPEN) ws.send(input.value);
  input.value = "";
};
</script>
</body>
</html>
"""


async def page(request: Request) -> HTTPResponse | None:
    """The HTTP hook: the page at ``/``; WebSocket upgrades go on to the router."""
    if request.path == "/" and not request.is_upgrade:
        return HTTPResponse.html(PAGE)
    return None


async def main(host: str, port: int, redis: str | None) -> None:
    if redis is not None:
        hub.backend = RedisBackend(redis)
    async with hub:  # with Redis: the listener runs for the hub's life
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                server = await nursery.start(
                    lambda task_status: serve_websocket(
                        router, host, port, process_request=page, task_status=task_status
                    )
                )
                print(
                    f"chat server: open http://{host}:{server.port}/ in two browser tabs (Ctrl+C to stop)",
                    flush=True,
                )
                async for _ in signals:
                    print("shutting down: closing every connection with 1001", flush=True)
                    nursery.cancel_scope.cancel()
                    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl+C stops at once
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    break


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--redis", help="a Redis URL: share the rooms with other chat processes")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    trio.run(main, args.host, args.port, args.redis)
