"""One ASGI connection as the byte stream a :class:`~trio_ws.WebSocketServer` serves.

:class:`ASGIStream` translates both ways. What the server reads is the HTTP request made from the
scope (:mod:`._mount_request`), then — once ``websocket.connect`` came and the handler accepted — the
client's frames, encoded from ``websocket.receive`` events by a client-role sans-I/O connection.
What the server writes is parsed back: its HTTP response becomes ``websocket.accept`` (subprotocol
and extra headers), or a refusal (``websocket.http.response.*`` when the ASGI server offers that
extension, else ``websocket.close`` before accept; ``http.response.*`` for a plain HTTP scope); then
its frames become ``websocket.send`` and ``websocket.close``. Control frames stay here: a ping is
answered at once, and the close frame's reply is fed straight back so that the closing handshake
completes (the ASGI server owns the real one with the client). ``websocket.disconnect`` becomes the
client's close frame with its code (1005: an empty one), or the end of the stream (1006).
"""

from __future__ import annotations

import collections
from typing import final

import trio

from ..connection import WebSocket
from ..protocol import (
    BytesMessage,
    CloseCode,
    CloseReceived,
    Connection,
    ConnectionState,
    HandshakeError,
    LocalProtocolError,
    ResponseParser,
    Role,
    TextMessage,
    is_wire_close_code,
)
from ._asgi_types import Message, Receive, Scope, Send, logger

__all__ = ["ASGIStream"]

#: The 101's headers that the ASGI server writes itself.
_HANDSHAKE_HEADERS = frozenset(
    {
        b"upgrade",
        b"connection",
        b"sec-websocket-accept",
        b"sec-websocket-protocol",
        b"sec-websocket-extensions",
    }
)
#: A refusal's headers that are the ASGI server's business (it frames the response itself).
_HOP_HEADERS = frozenset({b"connection", b"keep-alive", b"transfer-encoding"})

_HEAD, _BODY, _FRAMES, _DONE = range(4)  # what the server writes next


@final
class ASGIStream(trio.abc.Stream):
    """One ASGI ``websocket`` (or ``http``) connection as a stream (see the module).

    ``request`` is the HTTP request head the server reads first. ``ws`` is set by the handler
    wrapper once the server made the connection's :class:`~trio_ws.WebSocket`; ``handler_scope``
    surrounds the handler, so that :meth:`going_away` can end one that has not accepted yet.
    """

    def __init__(self, scope: Scope, receive: Receive, send: Send, request: bytes) -> None:
        self._http = scope.get("type") == "http"
        self._head_only = self._http and scope.get("method") == "HEAD"
        extensions = scope.get("extensions") or {}
        self._denial = "websocket.http.response" in extensions  # the ASGI server sends refusals
        self._receive = receive
        self._send = send
        self._chunks: collections.deque[bytes] = collections.deque([request])
        self._offset = 0  # into the first chunk
        self._eof = self._http  # nothing comes after a plain HTTP request's head
        self._connected = self._http  # websocket.connect came
        self._disconnected = False  # the ASGI server said websocket.disconnect, or failed
        self._leaving = False
        self._closed = False
        self._waiting: trio.CancelScope | None = None  # around a pending ASGI receive
        self._phase = _HEAD
        self._parser: ResponseParser | None = ResponseParser(max_size=2**20, max_headers=2**12)
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._body = b""
        self._length = 0
        self._peer = Connection(Role.CLIENT, max_message_size=None)  # the client's end
        #: Whether the server's 101 went out (``websocket.accept``).
        self.accepted = False
        #: The connection's WebSocket, once its handler runs.
        self.ws: WebSocket | None = None
        #: Around the handler (see :meth:`going_away`).
        self.handler_scope = trio.CancelScope()

    @property
    def leaving(self) -> bool:
        """Whether :meth:`going_away` was called."""
        return self._leaving

    # ------------------------------------------------------------- receiving

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """The next bytes for the server: the request head, then the client's frames; ``b""`` at
        the end. ``trio.BrokenResourceError`` when the ASGI server's ``receive`` failed."""
        await trio.lowlevel.checkpoint()
        while not self._chunks:
            if self._closed:
                raise trio.ClosedResourceError("the stream is closed")
            if self._eof:
                return b""
            await self._next_event()
        if self._closed:
            raise trio.ClosedResourceError("the stream is closed")
        return self._take(max_bytes)

    def _take(self, max_bytes: int | None) -> bytes:
        head, start = self._chunks[0], self._offset
        end = len(head) if max_bytes is None else min(len(head), start + max_bytes)
        if start == 0 and end == len(head):
            self._chunks.popleft()
            return head
        piece = head[start:end]
        if end == len(head):
            self._chunks.popleft()
            self._offset = 0
        else:
            self._offset = end
        return piece

    def _feed(self, data: bytes) -> None:
        """Bytes for the server (from this end): wake a read waiting for the ASGI server."""
        if data:
            self._chunks.append(data)
            if self._waiting is not None:
                self._waiting.cancel()

    async def _next_event(self) -> None:
        """Wait for the ASGI server's next event (or bytes from this end) and translate it."""
        if self._leaving or self._disconnected:
            self._eof = True
            return
        with trio.CancelScope() as waiting:
            self._waiting = waiting
            try:
                message = await self._receive()
            except Exception as exc:
                self._disconnected = self._eof = True
                raise trio.BrokenResourceError("the ASGI server's receive failed") from exc
            finally:
                self._waiting = None
        if waiting.cancelled_caught:
            return  # bytes from this end, or going away: look again
        self._translate(message)

    def _translate(self, message: Message) -> None:
        kind = message.get("type")
        if not self._connected:
            if kind == "websocket.connect":
                self._connected = True
                return
            self._disconnected = self._eof = True
            if kind != "websocket.disconnect":
                logger.error("ASGI server sent %r before websocket.connect; connection dropped", kind)
            return
        if kind == "websocket.receive":
            data, text = message.get("bytes"), message.get("text")
            try:
                if data is not None:
                    self._feed(self._peer.send_bytes(data))
                elif text is not None:
                    self._feed(self._peer.send_text(text))
                else:
                    logger.error("ASGI server sent websocket.receive without text or bytes; dropped")
            except LocalProtocolError:  # our end is closing: what comes now is dropped
                pass
        elif kind == "websocket.disconnect":
            self._disconnected = True
            code = message.get("code", CloseCode.NO_STATUS_RCVD)
            self._client_close(
                code if isinstance(code, int) else CloseCode.NO_STATUS_RCVD, message.get("reason")
            )
        else:
            logger.error("ASGI server sent %r on a websocket connection; connection dropped", kind)
            self._disconnected = self._eof = True

    def _client_close(self, code: int, reason: object) -> None:
        """The client's close frame with ``code`` (1005: none), or the end of the stream."""
        text = reason if isinstance(reason, str) and len(reason.encode()) <= 123 else ""
        if self._peer.state is ConnectionState.OPEN:
            if code == CloseCode.NO_STATUS_RCVD:
                self._feed(self._peer.send_close(None))
                return
            if is_wire_close_code(code):
                self._feed(self._peer.send_close(code, text))
                return
        self._eof = True  # 1006 and the like: the connection was lost

    def going_away(self) -> None:
        """The ASGI call is cancelled: end the connection as a server shutdown would. Accepted,
        the client says 1001 (the handler sees it after the messages before it; the server's
        reply goes out as ``websocket.close`` 1001); a handler that has not accepted is cancelled
        (and refused with 503); a request not yet read ends."""
        if self._leaving or self._closed:
            return
        self._leaving = True
        if self.accepted:
            if not self._disconnected and self._peer.state is ConnectionState.OPEN:
                self._feed(self._peer.send_close(CloseCode.GOING_AWAY, "server shutting down"))
        elif self.ws is not None:
            self.handler_scope.cancel()
        if self._waiting is not None:
            self._waiting.cancel()

    # --------------------------------------------------------------- sending

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Translate what the server writes into ASGI events and send them. Raises
        ``trio.BrokenResourceError`` when the ASGI server's ``send`` failed; after a disconnect
        what is written is dropped."""
        if self._closed:
            raise trio.ClosedResourceError("the stream is closed")
        if not self._connected and not self._disconnected and not self._leaving:
            await self._next_event()  # (websocket.connect first: the server answers before reading)
        messages = self._parse(bytes(data))
        if not messages:
            await trio.lowlevel.checkpoint()
        for message in messages:
            if self._disconnected:
                await trio.lowlevel.checkpoint()
                return
            try:
                await self._send(message)
            except Exception as exc:
                self._disconnected = self._eof = True
                raise trio.BrokenResourceError("the ASGI server's send failed") from exc

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    def _parse(self, data: bytes) -> list[Message]:
        if self._phase == _HEAD:
            assert self._parser is not None
            try:
                head = self._parser.receive_data(data)
            except HandshakeError as exc:  # (the server's own response: not expected)
                raise trio.BrokenResourceError(f"unreadable response from the server: {exc}") from exc
            if head is None:
                return []
            data, self._parser = self._parser.trailing, None
            raw = head.headers.raw
            if head.status == 101 and not self._http:
                self._phase = _FRAMES
                self.accepted = True
                protocols = head.headers.getlist("sec-websocket-protocol")
                accept: Message = {
                    "type": "websocket.accept",
                    "subprotocol": protocols[0] if protocols else None,
                    "headers": [(n.lower(), v) for n, v in raw if n.lower() not in _HANDSHAKE_HEADERS],
                }
                return [accept, *self._frames(data)]
            self._phase = _BODY
            self._status = head.status
            self._headers = [(n.lower(), v) for n, v in raw if n.lower() not in _HOP_HEADERS]
            length = head.headers.get("content-length", "0")
            self._length = 0 if self._head_only or not length.isdigit() else int(length)
        if self._phase == _BODY:
            self._body += data
            if len(self._body) < self._length:
                return []
            self._phase = _DONE
            return self._refusal(self._body[: self._length])
        if self._phase == _FRAMES:
            return self._frames(data)
        return []

    def _refusal(self, body: bytes) -> list[Message]:
        self._eof = True  # nothing the client sends matters now (the server lingers reading)
        if self._waiting is not None:
            self._waiting.cancel()
        if self._http:
            start = {"type": "http.response.start", "status": self._status, "headers": self._headers}
            return [start, {"type": "http.response.body", "body": body}]
        if self._denial:
            start = {
                "type": "websocket.http.response.start",
                "status": self._status,
                "headers": self._headers,
            }
            return [start, {"type": "websocket.http.response.body", "body": body}]
        return [{"type": "websocket.close", "code": CloseCode.NORMAL_CLOSURE}]  # (the server: 403)

    def _frames(self, data: bytes) -> list[Message]:
        if not data:
            return []
        peer = self._peer
        out: list[Message] = []
        for event in peer.receive_data(data):
            if isinstance(event, TextMessage):
                out.append({"type": "websocket.send", "text": event.data})
            elif isinstance(event, BytesMessage):
                out.append({"type": "websocket.send", "bytes": event.data})
            elif isinstance(event, CloseReceived):
                code = event.code if is_wire_close_code(event.code) else CloseCode.NORMAL_CLOSURE
                out.append({"type": "websocket.close", "code": code, "reason": event.reason})
                self._phase = _DONE
        if peer.failure is not None:  # (the server's own frames: not expected)
            raise trio.BrokenResourceError(f"unreadable frames from the server: {peer.failure}")
        self._feed(peer.data_to_send())  # pongs, and the reply to the server's close frame
        return out

    # --------------------------------------------------------------- closing

    async def aclose(self) -> None:
        """Close the stream: what is pending is dropped; the ASGI side hears nothing more."""
        self._closed = True
        self._chunks.clear()
        if self._waiting is not None:
            self._waiting.cancel()
        await trio.lowlevel.checkpoint()
