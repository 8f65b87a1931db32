"""WebSocket connections for an ASGI application: the handler the server runs for each accepted
upgrade request, which calls the application with the connection's websocket scope and turns its
messages into calls on the :class:`~trio_ws.WebSocket` (and the connection's events into messages).

The rules of the ASGI WebSocket events, both ways, are a small state machine per connection.
Whatever the application sends that its state does not allow raises ``RuntimeError`` in the
application, and a message whose fields are malformed (``text`` not a ``str``, ``bytes`` not bytes,
headers not pairs of byte strings, a close code not an ``int``) ``ValueError`` (the connection then
ends as when a handler raises: 500 before the handshake is answered, 1011 after). The states:

==============  =================================================  ===========================
application     may send                                           then
==============  =================================================  ===========================
connecting      ``websocket.accept``                               open
connecting      ``websocket.close`` (HTTP 403)                     closed
connecting      ``websocket.http.response.start``                  responding
responding      ``websocket.http.response.body`` (``more_body``)   responding, or closed
open            ``websocket.send`` (exactly one of text, bytes)    open
open            ``websocket.close`` (close frame)                  closed
closed          nothing                                            -
==============  =================================================  ===========================

``receive`` gives ``websocket.connect`` first; once accepted, ``websocket.receive`` for each
message and ``websocket.disconnect`` (code, reason) when the connection closes; after a refusal,
``websocket.disconnect`` (1006). A receive after ``websocket.disconnect`` raises ``RuntimeError``.
Before the application answers the handshake, a receive after ``websocket.connect`` waits for that
answer. ``send`` (``websocket.send`` and ``websocket.close``) raises :class:`ClientDisconnected`
once the client is gone; what the application raises after that (Starlette's
``WebSocketDisconnect``, say) is logged in one line at INFO.

Per message, a receive is one ``ws.receive()`` and a dict; a send is one ``ws.send_text()`` or
``ws.send_bytes()``: no task, no queue, no copy.
"""

from __future__ import annotations

from typing import Any, final
from urllib.parse import unquote

import trio

from ..connection import WebSocket, WebSocketDisconnect, WebSocketState, websocket_scope
from ..protocol import CloseCode
from ._asgi_types import ASGIApp, ClientDisconnected, Message, logger, split_target

__all__ = ["ASGIAppHandler", "WebSocketEvents"]

# The application's side (what it may send next).
CONNECTING, RESPONDING, REFUSED, OPEN, CLOSED = range(5)
# The client's side (what receive gives next).
UNCONNECTED, CONNECTED, DISCONNECTED = range(3)

#: Response headers that the denial response writes itself.
_FRAMING = frozenset({"content-length", "connection", "transfer-encoding", "content-type"})


def _text_pairs(headers: Any) -> list[tuple[str, str]]:
    try:
        return [(_latin1(name), _latin1(value)) for name, value in headers]
    except (TypeError, ValueError):
        raise ValueError(f"headers are pairs of byte strings, not {headers!r:.80}") from None


def _latin1(data: Any) -> str:
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(type(data).__name__)
    return data.decode("latin-1")


def _send_error(text: object, data: object) -> ValueError:
    """What is wrong with a ``websocket.send`` that has not exactly one of a ``str`` ``text`` and
    a bytes ``bytes``."""
    if (text is None) == (data is None):
        return ValueError("websocket.send needs exactly one of 'text' and 'bytes'")
    if text is not None:
        return ValueError(f"websocket.send's 'text' is a str, not {type(text).__name__}")
    return ValueError(f"websocket.send's 'bytes' is bytes, not {type(data).__name__}")


@final
class WebSocketEvents:
    """One connection's ASGI ``receive`` and ``send`` (see the module for the rules)."""

    __slots__ = ("app_state", "body", "client_state", "decided", "gone", "headers", "status", "ws")

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.app_state = CONNECTING
        self.client_state = UNCONNECTED
        self.decided: trio.Event | None = None  # made when a receive waits for the answer
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.gone = False  # a send raised ClientDisconnected

    # ----------------------------------------------------------------- receive

    async def receive(self) -> Message:
        """The next ASGI event of the connection."""
        if self.client_state == CONNECTED and self.app_state >= OPEN:
            try:
                data = await self.ws.receive()
            except WebSocketDisconnect as exc:
                self.client_state = DISCONNECTED
                return {"type": "websocket.disconnect", "code": exc.code, "reason": exc.reason}
            if type(data) is str:
                return {"type": "websocket.receive", "text": data}
            return {"type": "websocket.receive", "bytes": data}
        return await self._receive_otherwise()

    async def _receive_otherwise(self) -> Message:
        if self.client_state == UNCONNECTED:
            self.client_state = CONNECTED
            await trio.lowlevel.checkpoint()
            return {"type": "websocket.connect"}
        if self.client_state == DISCONNECTED:
            raise RuntimeError("receive() after websocket.disconnect: the connection is over")
        if self.app_state < REFUSED:  # the handshake is not answered yet: wait for the answer
            if self.decided is None:
                self.decided = trio.Event()
            await self.decided.wait()
        if self.app_state == REFUSED:
            self.client_state = DISCONNECTED
            await trio.lowlevel.checkpoint()
            return {"type": "websocket.disconnect", "code": CloseCode.ABNORMAL_CLOSURE, "reason": ""}
        return await self.receive()

    def _answered(self, state: int) -> None:
        self.app_state = state
        if self.decided is not None:
            self.decided.set()

    # -------------------------------------------------------------------- send

    async def send(self, message: Message) -> None:
        """Do what the application's ``message`` asks, if its state allows it."""
        kind = message.get("type")
        if self.app_state == OPEN:
            if kind == "websocket.send":
                text = message.get("text")
                data = message.get("bytes")
                try:
                    if data is None and isinstance(text, str):
                        await self.ws.send_text(text)
                    elif text is None and isinstance(data, (bytes, bytearray, memoryview)):
                        await self.ws.send_bytes(data)
                    else:
                        raise _send_error(text, data)
                except WebSocketDisconnect as exc:
                    raise self._disconnected(f"the client is gone ({exc})") from None
                return
            if kind == "websocket.close":
                return await self._close(message)
            raise RuntimeError(f"expected websocket.send or websocket.close, got {kind!r}")
        await self._send_otherwise(kind, message)

    def _disconnected(self, text: str) -> ClientDisconnected:
        self.gone = True
        return ClientDisconnected(text)

    async def _close(self, message: Message) -> None:
        code = message.get("code")
        reason = message.get("reason") or ""
        if code is None:
            code = CloseCode.NORMAL_CLOSURE
        if type(code) is not int or not isinstance(reason, str):
            raise ValueError(
                f"websocket.close takes an int 'code' and a str 'reason', not {code!r}, {reason!r:.40}"
            )
        if self.ws.client_state is WebSocketState.DISCONNECTED:  # (ASGI spec 2.4: an OSError)
            raise self._disconnected(f"the client is gone (WebSocket closed with code {self.ws.close_code})")
        await self.ws.close(code, reason)
        self.app_state = CLOSED

    def client_gone(self) -> bool:
        """Whether the application was told that the client is gone (a ``websocket.disconnect``,
        or a send that raised :class:`ClientDisconnected`)."""
        return self.gone or self.client_state == DISCONNECTED

    async def _send_otherwise(self, kind: object, message: Message) -> None:
        state = self.app_state
        if state == CONNECTING:
            if kind == "websocket.accept":
                return await self._accept(message)
            if kind == "websocket.close":
                self._answered(REFUSED)
                return await self.ws.reject(403)
            if kind == "websocket.http.response.start":
                status = message.get("status")
                if type(status) is not int or not 400 <= status <= 599:
                    raise RuntimeError(f"a denial response's status is 400-599, not {status!r}")
                self.status, self.headers = status, _text_pairs(message.get("headers") or ())
                self.app_state = RESPONDING
                return await trio.lowlevel.checkpoint()
            raise RuntimeError(
                f"expected websocket.accept, websocket.close or websocket.http.response.start, got {kind!r}"
            )
        if state == RESPONDING:
            if kind != "websocket.http.response.body":
                raise RuntimeError(f"expected websocket.http.response.body, got {kind!r}")
            body = message.get("body", b"")
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise ValueError(f"websocket.http.response.body's body is bytes, not {type(body).__name__}")
            self.body.append(bytes(body))
            if message.get("more_body", False):
                return await trio.lowlevel.checkpoint()
            self._answered(REFUSED)
            return await self._deny()
        if state == OPEN:
            raise RuntimeError(f"expected websocket.send or websocket.close, got {kind!r}")
        what = "websocket.close" if state == CLOSED else "the handshake was refused"
        raise RuntimeError(f"{kind!r} after {what}: the connection is over")

    async def _accept(self, message: Message) -> None:
        headers = _text_pairs(message.get("headers") or ())
        try:
            await self.ws.accept(message.get("subprotocol"), headers)
        except WebSocketDisconnect as exc:  # shutting down (503), or refused by process_response
            self._answered(REFUSED)
            raise self._disconnected(f"the handshake did not complete ({exc})") from None
        self._answered(OPEN)

    async def _deny(self) -> None:
        content_type = "text/plain; charset=utf-8"
        headers: list[tuple[str, str]] = []
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == "content-type":
                content_type = value
            elif lowered not in _FRAMING:
                headers.append((name, value))
        body, self.body = b"".join(self.body), []
        await self.ws.reject(self.status, body, headers, content_type=content_type)

    def unfinished(self) -> bool:
        """Whether a denial response was started and not finished."""
        return self.app_state == RESPONDING


@final
class ASGIAppHandler:
    """The server's handler for an ASGI application: each accepted upgrade request becomes a call
    of ``app`` with its websocket scope (``state``: a shallow copy of the lifespan state)."""

    __slots__ = ("app", "root_path", "state")

    def __init__(self, app: ASGIApp, root_path: str, state: dict[str, Any]) -> None:
        self.app = app
        self.root_path = root_path
        self.state = state

    async def __call__(self, ws: WebSocket) -> None:
        request = ws.request
        assert request is not None  # (a server's connection)
        scope = websocket_scope(request, ws.local_address, self.root_path)
        if not request.target.startswith("/"):  # the absolute form (ws://host/path): its path
            raw_path, _ = split_target(request.target.encode("latin-1"))
            scope["raw_path"] = self.root_path.encode("latin-1") + raw_path
            scope["path"] = self.root_path + unquote(raw_path.decode("latin-1"))
        scope["state"] = self.state.copy()
        scope["extensions"] = {"websocket.http.response": {}}
        session = WebSocketEvents(ws)
        try:
            await self.app(scope, session.receive, session.send)
        except ClientDisconnected:
            return  # the client went away: nothing to report
        except Exception as exc:
            if not session.client_gone():
                raise
            name = type(exc).__name__
            logger.info("ASGI application for %s raised %s once the client was gone", ws.path, name)
            return
        if session.unfinished():
            logger.error("ASGI application for %s returned before its denial response was complete", ws.path)
            await ws.reject(500)
