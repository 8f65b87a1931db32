"""Driving an ASGI application by hand, as an ASGI server would: the scope, the events it receives,
the messages it sends (tests/test_asgi_mount*.py)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

Message = MutableMapping[str, Any]
App = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]


def websocket_scope(
    path: str = "/",
    *,
    root_path: str = "",
    query: bytes = b"",
    headers: Sequence[tuple[bytes, bytes]] = (),
    subprotocols: Sequence[str] = (),
    client: tuple[str, int] | None = ("10.0.0.7", 4321),
    scheme: str = "ws",
    denial: bool = True,
    raw_path: bytes | None = None,
) -> dict[str, Any]:
    """A websocket scope as hypercorn makes one; ``denial``: the ``websocket.http.response``
    extension is offered."""
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode() if raw_path is None else raw_path,
        "query_string": query,
        "root_path": root_path,
        "headers": [
            (b"host", b"example.com"),
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-key", b"x3JJHMbDL1EzLkh9GBhXDw=="),
            (b"sec-websocket-version", b"13"),
            (b"sec-websocket-extensions", b"permessage-deflate"),
            *headers,
        ],
        "client": client,
        "server": ("127.0.0.1", 8000),
        "subprotocols": list(subprotocols),
        "extensions": {"websocket.http.response": {}} if denial else {},
    }


class ASGICall:
    """One call of an application: :meth:`put` what the server would send it, :meth:`get` what
    it sent (in order). ``failing_send``: message types whose send raises ``OSError``."""

    def __init__(self, app: App, scope: MutableMapping[str, Any], failing_send: Sequence[str] = ()) -> None:
        self.app = app
        self.scope = scope
        self.failing_send = set(failing_send)
        self._in_send, self._in_receive = trio.open_memory_channel[Message](math.inf)
        self._out_send, self._out_receive = trio.open_memory_channel[Message](math.inf)
        #: Set once the application returned (or raised).
        self.done = trio.Event()
        #: What the call raised, if it did.
        self.error: BaseException | None = None

    async def run(self) -> None:
        try:
            await self.app(self.scope, self._in_receive.receive, self._send)
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            self.done.set()

    async def _send(self, message: Message) -> None:
        if message.get("type") in self.failing_send:
            raise OSError("the client is gone")
        await self._out_send.send(message)

    async def put(self, message: Message) -> None:
        await self._in_send.send(message)

    async def get(self) -> Message:
        with trio.fail_after(5):
            return await self._out_receive.receive()

    def pending(self) -> list[Message]:
        """What the application sent and :meth:`get` has not taken."""
        out = []
        while True:
            try:
                out.append(self._out_receive.receive_nowait())
            except trio.WouldBlock:
                return out

    async def finished(self) -> None:
        with trio.fail_after(5):
            await self.done.wait()


@asynccontextmanager
async def asgi_call(
    app: App, scope: MutableMapping[str, Any], *, connect: bool = True, failing_send: Sequence[str] = ()
) -> AsyncIterator[ASGICall]:
    """Run one call of ``app`` for the block (``websocket.connect`` sent first if ``connect``);
    leaving waits until the call has returned: none of its tasks may outlive it."""
    call = ASGICall(app, scope, failing_send)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call.run)
        if connect and scope.get("type") == "websocket":
            await call.put({"type": "websocket.connect"})
        yield call
        await call.finished()
