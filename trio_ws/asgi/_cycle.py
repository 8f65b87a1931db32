"""One HTTP request and its response, for an ASGI application: its ``receive`` and ``send``.

``receive`` reads the request body from the stream as the application asks for it (``http.request``
chunks, ``more_body`` until the last; ``Expect: 100-continue`` is answered on the first call); once
the body is read, a receive waits until the client is gone or the response is complete, then gives
``http.disconnect``. ``send`` takes ``http.response.start`` then ``http.response.body`` messages
(``more_body`` streams them; the head goes out with the first body, with ``Content-Length`` when the
whole body is known then, else chunked). A message out of order raises ``RuntimeError`` in the
application. Sends to a client that is gone are dropped (ASGI HTTP spec 2.3). A body beyond
``max_body_size`` is answered with 413.
"""

from __future__ import annotations

import email.utils
import time
from http import HTTPStatus
from typing import final

import h11
import trio

from ..connection import receive_some
from ..protocol import error_response
from ._asgi_types import Message

__all__ = ["RequestCycle", "as_bytes", "http_date"]

_PHRASES = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}
_LENGTH_HEADERS = frozenset({b"content-length", b"transfer-encoding"})
_date = (0, b"")  # (the second, its Date header)


def as_bytes(data: bytes | bytearray) -> bytes:
    """``data`` as ``bytes`` (what h11 takes), copied only if it is not."""
    return data if isinstance(data, bytes) else bytes(data)


def http_date() -> bytes:
    """The ``Date`` header's value for now (made once a second)."""
    global _date
    now = int(time.time())
    if now != _date[0]:
        _date = (now, email.utils.formatdate(now, usegmt=True).encode("ascii"))
    return _date[1]


@final
class RequestCycle:
    """The ASGI ``receive`` and ``send`` of one request on ``conn`` (an ``h11.Connection`` past the
    request's head) over ``stream``. ``extra_headers``: the server's own (``Server``: names
    lower-cased), unless the application gave them; ``close``:
    the connection ends after this response (``Connection: close``)."""

    __slots__ = (
        "body_done",
        "close",
        "complete",
        "conn",
        "disconnected",
        "extra_headers",
        "head_only",
        "head_sent",
        "headers",
        "listening",
        "max_body_size",
        "pipelined_limit",
        "received",
        "receiving",
        "started",
        "status",
        "stream",
    )

    def __init__(
        self,
        conn: h11.Connection,
        stream: trio.abc.Stream,
        *,
        head_only: bool,
        max_body_size: int | None,
        pipelined_limit: int,
        extra_headers: list[tuple[bytes, bytes]],
        close: bool = False,
    ) -> None:
        self.conn = conn
        self.stream = stream
        self.head_only = head_only  # a HEAD request: the head a GET would get, no body
        self.max_body_size = max_body_size
        self.pipelined_limit = pipelined_limit  # bytes of the next requests read while waiting
        self.extra_headers = extra_headers
        self.close = close
        self.body_done = False
        self.received = 0
        self.receiving = False  # (one receive at a time: it reads the stream)
        self.disconnected = False  # the client is gone (or its request was answered by us)
        self.started = False
        self.head_sent = False
        self.complete = False
        self.status: int | None = None  # the status answered, once the head is out
        self.headers: list[tuple[bytes, bytes]] = []
        self.listening: trio.CancelScope | None = None

    # ----------------------------------------------------------------- receive

    async def receive(self) -> Message:
        """The next ASGI event of the request."""
        if self.disconnected or self.complete:
            await trio.lowlevel.checkpoint()
            return {"type": "http.disconnect"}
        if self.receiving:
            raise RuntimeError("receive() while another receive() of this request is waiting")
        self.receiving = True
        try:
            if not self.body_done:
                return await self._read_body()
            return await self._wait_for_disconnect()
        finally:
            self.receiving = False

    async def _read(self) -> bool:
        """Feed the next bytes from the stream to the parser; ``False`` at the end of the stream."""
        try:
            data = await receive_some(self.stream, 65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        self.conn.receive_data(as_bytes(data))
        return bool(data)

    async def _read_body(self) -> Message:
        conn = self.conn
        if conn.they_are_waiting_for_100_continue and not self.head_sent:
            await self._write(
                conn.send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue"))
            )
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:  # a malformed body, or the client went away in it
                if not self.head_sent and not self.disconnected:
                    await self._answer(400, "malformed request body\n")
                self.disconnected = True
                return {"type": "http.disconnect"}
            if event is h11.NEED_DATA:
                if not await self._read():  # the client is gone
                    self.disconnected = True
                    return {"type": "http.disconnect"}
                continue
            if type(event) is h11.Data:
                self.received += len(event.data)
                limit = self.max_body_size
                if limit is not None and self.received > limit:
                    if not self.head_sent:
                        await self._answer(413, f"the request body is over {limit} bytes\n")
                    self.disconnected = True
                    return {"type": "http.disconnect"}
                return {"type": "http.request", "body": bytes(event.data), "more_body": True}
            self.body_done = True
            if type(event) is h11.EndOfMessage:
                return {"type": "http.request", "body": b"", "more_body": False}
            self.disconnected = True
            return {"type": "http.disconnect"}

    async def _wait_for_disconnect(self) -> Message:
        read = 0
        try:
            with trio.CancelScope() as self.listening:  # (cancelled when the response is complete)
                while read <= self.pipelined_limit:  # (the next requests are kept for later)
                    try:
                        data = await receive_some(self.stream, 65536)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        data = b""
                    if not data:
                        self.disconnected = True
                        break
                    self.conn.receive_data(as_bytes(data))
                    read += len(data)
                else:
                    await trio.sleep_forever()
        finally:
            self.listening = None
        return {"type": "http.disconnect"}

    # -------------------------------------------------------------------- send

    async def send(self, message: Message) -> None:
        """Do what the application's ``message`` asks, if the response's state allows it."""
        kind = message.get("type")
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected http.response.start, got {kind!r}")
            status = message.get("status")
            if type(status) is not int or not 200 <= status <= 599:
                raise RuntimeError(f"an HTTP response's status is 200-599, not {status!r}")
            self.status = status
            self.headers = [(bytes(name), bytes(value)) for name, value in message.get("headers") or ()]
            self.started = True
            return await trio.lowlevel.checkpoint()
        if self.complete:
            raise RuntimeError(f"{kind!r} after the response was complete")
        if kind != "http.response.body":
            raise RuntimeError(f"expected http.response.body, got {kind!r}")
        body = message.get("body", b"")
        more = bool(message.get("more_body", False))
        if self.disconnected:  # (nobody to send it to)
            if not more:
                self._completed()
            return await trio.lowlevel.checkpoint()
        conn = self.conn
        try:
            out = []
            if not self.head_sent:
                out.append(conn.send(self._response(None if more else len(body))))
                self.head_sent = True
            if body and not self.head_only:
                out.append(conn.send(h11.Data(data=body)))
            if not more:
                out.append(conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError as exc:  # more body than its Content-Length, a bad header...
            raise RuntimeError(f"invalid HTTP response: {exc}") from None
        await self._write(b"".join(out))
        if not more:
            self._completed()

    def _response(self, length: int | None) -> h11.Response:
        status = self.status
        assert status is not None
        headers = self.headers
        given = {name.lower() for name, _ in headers}
        sized = length is not None and status not in (204, 304) and not (self.head_only and not length)
        if sized and not given & _LENGTH_HEADERS:
            headers.append((b"content-length", str(length).encode("ascii")))
        headers += [(name, value) for name, value in self.extra_headers if name not in given]
        if b"date" not in given:
            headers.append((b"date", http_date()))
        if self.close and b"connection" not in given:
            headers.append((b"connection", b"close"))
        return h11.Response(status_code=status, headers=headers, reason=_PHRASES.get(status, b""))

    def _completed(self) -> None:
        self.complete = True
        if self.listening is not None:
            self.listening.cancel()

    async def _write(self, data: bytes) -> None:
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.disconnected = True

    async def _answer(self, status: int, text: str) -> None:
        """Answer with ``status`` ourselves (and end the connection), before the application did."""
        self.status = status
        self.head_sent = True
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in self.extra_headers]
        await self._write(error_response(status, text, headers))
        self.conn.send_failed()  # (h11 knows nothing of it: this connection is done)

    async def fail(self) -> None:
        """The application raised or returned without a whole response: 500 if nothing was sent
        yet (and the client is still there); otherwise the connection is dropped."""
        if not self.head_sent and not self.disconnected:
            await self._answer(500, "internal server error\n")
        self.disconnected = True

    @property
    def reusable(self) -> bool:
        """Whether the connection may serve another request after this one."""
        return self.complete and not self.disconnected and self.conn.our_state is h11.DONE
