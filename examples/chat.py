"""Chat with rooms, and the browser page that talks to it, served by the same server.

    python examples/chat.py                  # then open http://127.0.0.1:8000/ in two browser tabs
    python examples/chat.py --port 9000

The page (``GET /``, answered by the HTTP hook, with its icon) opens ``ws://<host>/ws/<room>?name=<name>``;
every message goes to everyone in the room through a :class:`~trio_ws.Hub`. ``?room=`` and ``?name=``
on the page's URL pick them; a room name can be anything (it is percent-encoded in the path, ``/``
included). A message has at most 2,000 characters: a longer one is refused, with a word to its
sender. Each room keeps its latest 100 messages: a page that opens (or is reloaded) shows the last 50,
and a page that reconnects sends the position of the last message it showed (``&offset=&epoch=``) and
gets exactly what it missed meanwhile. The page lists who is in the room, and says who joins and
leaves. It reconnects by itself when the server restarts (with backoff; the text being typed stays),
and says why a connection closed. ``--redis redis://127.0.0.1:6379/0`` puts the rooms, their history
and who is in them in Redis, so that several chat processes share them (and a page that reconnects to
another process still gets what it missed). Ctrl+C shuts down gracefully (close 1001 to everyone:
"server restarting" on the page); a second Ctrl+C stops at once.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio_ws
from trio_ws import (
    HTTPResponse,
    Hub,
    Overflow,
    PresenceUnavailable,
    RedisBackend,
    Request,
    Router,
    StreamPosition,
    WebSocket,
    WebSocketServer,
)

#: The longest message, in characters (the page checks it too, before sending).
MAX_CHARS = 2000
#: The messages a page that opens is shown from the room's history.
RECENT = 50

router = Router()
#: Rooms: each member has its own bounded queue, so a slow browser never holds up the room. Each room
#: keeps its latest 100 messages for a day; every message goes out in an envelope with its offset
#: ({"room", "offset", "epoch", "data"}) for the page to keep; members hear of joins and leaves.
hub = Hub(
    queue_size=100,
    overflow=Overflow.DROP_OLDEST,
    history_size=100,
    history_ttl=24 * 3600,
    envelope=True,
    join_leave=True,
)


@router.websocket("/ws/{room:path}")  # path: a room's name may hold a "/"
async def chat(ws: WebSocket, room: str) -> None:
    query = ws.query_params
    name = (query.get("name") or "guest")[:32]
    # Where a reconnecting page stands; None for a page that just opened (or sent nonsense).
    since = StreamPosition.from_client(query.get("offset"), query.get("epoch"))
    await ws.accept()
    # Recover what the page missed, or (a new page, or a gap the history no longer holds) the latest
    # RECENT messages; the first message says which ({"recovered": ...}). Leaves the room however the
    # connection ends.
    async with hub.subscribe(ws, room, info={"name": name}, since=since, recent=RECENT):
        try:
            members = await hub.presence(room)
        except PresenceUnavailable:  # Redis is away: the list comes with the next joins and leaves
            members = []
        await ws.send_json({"who": [{"id": m.client_id, "name": m.info["name"]} for m in members]})
        async for text in ws.iter_text():
            if len(text) > MAX_CHARS:  # to the sender only; the room sees nothing
                refusal = f"Not sent: your message has {len(text):,} characters, at most {MAX_CHARS:,}."
                await ws.send_json({"from": "server", "error": "too_long", "text": refusal})
                continue
            await hub.publish(room, {"from": name, "text": text})


ICON = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">
<rect width="32" height="32" rx="7" fill="#2f6fbf"/><path d="M7 9h18v12H14l-5 4v-4H7z" fill="#fff"/></svg>
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>trio_ws chat</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<style>
  body { font: 16px system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
  #log { border: 1px solid #ccc; border-radius: 6px; height: 20rem; overflow-y: auto; padding: .5rem; }
  #log p { margin: .2rem 0; }
  .server { color: #777; font-style: italic; }
  .error, #note { color: #a33; }
  form { display: flex; gap: .5rem; margin-top: .5rem; }
  #text { flex: 1; padding: .4rem; }
  #status { color: #555; font-size: .85rem; }
  #status[data-state="reconnecting"], #status[data-state="closed"] { color: #a33; }
  #note { font-size: .85rem; min-height: 1.2em; margin: .3rem 0; }
  #who { color: #555; font-size: .85rem; }
</style>
</head>
<body>
<h1>Room <span id="room"></span></h1>
<p id="status" data-state="connecting" role="status">connecting…</p>
<p id="who" aria-live="polite"></p>
<div id="log"></div>
<form id="form"><input id="text" autocomplete="off" placeholder="Say something" aria-label="Message">
<button>Send</button></form>
<p id="note" role="status"></p>
<script>
const MAX_CHARS = __MAX_CHARS__;
// What a close code means, in words (RFC 6455 section 7.4.1 and the IANA registry).
const CLOSE_CODES = {
  1000: "the server ended the chat",
  1001: "server restarting",
  1002: "protocol error",
  1003: "the server cannot take this kind of message",
  1006: "connection lost",
  1007: "a message was not valid text",
  1008: "refused by the server's rules",
  1009: "message too long",
  1011: "server error",
  1012: "server restarting",
  1013: "server busy, try again later",
  1014: "bad gateway",
};
const FINAL = new Set([1000, 1008]);  // the server meant it: reconnecting would not help
const params = new URLSearchParams(location.search);
const room = params.get("room") || "lobby";
const name = params.get("name") || "guest-" + Math.floor(Math.random() * 1000);
document.getElementById("room").textContent = room;
document.title = `${room} · trio_ws chat`;
const scheme = location.protocol === "https:" ? "wss" : "ws";
// Any room name: percent-encoded into one path segment ("a/b" is "a%2Fb").
const base = `${scheme}://${location.host}/ws/${encodeURIComponent(room)}?name=${encodeURIComponent(name)}`;
// The position of the last message shown: sent back on reconnecting, to get exactly what was missed.
let position = null;
const members = new Map();  // client id -> name: who is in the room
const status = document.getElementById("status");
const log = document.getElementById("log");
const input = document.getElementById("text");
const note = document.getElementById("note");
let ws = null;
let attempt = 0;  // reconnections since the last connection that opened

function setStatus(state, text) {
  status.dataset.state = state;
  status.textContent = text;
}

function characters(text) {
  return [...text].length;  // code points, as the server counts them
}

function show(message) {
  const line = document.createElement("p");
  if (message.from === "server") line.className = message.error ? "server error" : "server";
  line.textContent = message.from === "server" ? message.text : `${message.from}: ${message.text}`;
  log.appendChild(line);
  log.scrollTop = log.scrollHeight;
}

function showMembers() {
  const names = [...members.values()].sort();
  document.getElementById("who").textContent = `In the room (${names.length}): ${names.join(", ")}`;
}

// One message from the server: a room message in its envelope, where this page stands in the room's
// history, who is in the room, someone joining or leaving, or a word to this page only.
function receive(message) {
  if ("data" in message) {  // {"room", "offset", "epoch", "data"}
    position = {offset: message.offset, epoch: message.epoch};
    show(message.data);
  } else if ("recovered" in message) {  // the first one: {"room", "offset", "epoch", "recovered"}
    if (position && !message.recovered) {  // too long away: the room's latest messages follow
      log.replaceChildren();
      show({from: "server", text: "some messages are gone from the room's history: here are the latest"});
    }
    position = message.offset === null ? null : {offset: message.offset, epoch: message.epoch};
  } else if ("who" in message) {
    for (const member of message.who) members.set(member.id, member.name);
    showMembers();
  } else if ("presence" in message) {  // {"presence": "join" | "leave", "client_id", "info"}
    const who = message.info ? message.info.name : "someone";
    if (message.presence === "join") members.set(message.client_id, who);
    else members.delete(message.client_id);
    showMembers();
    const text = message.presence === "join" ? `${who} joined ${message.room}` : `${who} left`;
    show({from: "server", text});
  } else {
    show(message);
  }
}

function why(event) {
  const words = CLOSE_CODES[event.code] || "closed";
  return `${event.reason && event.reason !== words ? `${words}: ${event.reason}` : words} (${event.code})`;
}

function connect() {
  setStatus("connecting", attempt ? "reconnecting…" : "connecting…");
  const at = position ? `&offset=${position.offset}&epoch=${encodeURIComponent(position.epoch)}` : "";
  members.clear();  // the server sends the list again
  ws = new WebSocket(base + at);
  ws.onopen = () => {
    attempt = 0;
    setStatus("open", `connected as ${name}; extensions: ${ws.extensions || "none"}`);
    if (note.dataset.kind === "offline") note.textContent = "";
  };
  ws.onmessage = (event) => receive(JSON.parse(event.data));
  ws.onclose = (event) => {
    if (attempt === 0) show({from: "server", text: `disconnected: ${why(event)}`});  // once an outage
    if (FINAL.has(event.code)) {
      setStatus("closed", `closed: ${why(event)}`);
      return;
    }
    // Back off: about 0.5 s, 1 s, 2 s ... up to 15 s; jitter, so that a room does not come back at once.
    const delay = Math.min(15000, 500 * 2 ** attempt) * (0.75 + Math.random() / 2);
    attempt += 1;
    setStatus("reconnecting", `${why(event)}; reconnecting in ${(delay / 1000).toFixed(1)} s…`);
    setTimeout(connect, delay);
  };
}

function say(text, kind) {
  note.textContent = text;
  note.dataset.kind = kind;
}

input.oninput = () => {
  const length = characters(input.value);
  if (length > MAX_CHARS) say(`${length} characters: too long to send (at most ${MAX_CHARS})`, "length");
  else if (note.dataset.kind === "length") say("", "");
};

document.getElementById("form").onsubmit = (event) => {
  event.preventDefault();
  const text = input.value;
  if (!text) return;
  const length = characters(text);
  if (length > MAX_CHARS) {
    say(`Too long: ${length} characters, at most ${MAX_CHARS}. Nothing was sent.`, "length");
  } else if (!ws || ws.readyState !== WebSocket.OPEN) {
    say("Not connected: your text stays here; send it once the chat is back.", "offline");
  } else {
    ws.send(text);
    input.value = "";  // only once it went: the text stays while the chat is away
    say("", "");
  }
};

connect();
</script>
</body>
</html>
""".replace("__MAX_CHARS__", str(MAX_CHARS))


async def page(request: Request) -> HTTPResponse | None:
    """The HTTP hook: the page at ``/`` and its icon; WebSocket upgrades go on to the router."""
    if request.is_upgrade:
        return None
    if request.path == "/":
        return HTTPResponse.html(PAGE)
    if request.path in ("/favicon.svg", "/favicon.ico"):  # browsers ask for /favicon.ico anyway
        return HTTPResponse(200, ICON, [("Cache-Control", "max-age=86400")], "image/svg+xml")
    return None  # plain HTTP elsewhere: 426 Upgrade Required


def browser_host(host: str) -> str:
    """Where a browser on this machine finds ``host`` (the wildcard addresses are not addresses)."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"[{host}]" if ":" in host else host


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--redis", help="a Redis URL: share the rooms with other chat processes")
    args = parser.parse_args()
    if args.redis is not None:
        hub.backend = RedisBackend(args.redis)

    @asynccontextmanager
    async def lifespan(server: WebSocketServer) -> AsyncIterator[None]:
        async with hub:  # with Redis: the hub's listener runs as long as the server
            url = f"http://{browser_host(args.host)}:{server.port}/"
            print(f"chat server: open {url} in two browser tabs (Ctrl+C to stop)", flush=True)
            yield

    # Says where it listens; a port in use is one line and exit status 1; Ctrl+C closes with 1001.
    trio_ws.run(router, args.host, args.port, lifespan=lifespan, process_request=page, max_message_size=2**16)
