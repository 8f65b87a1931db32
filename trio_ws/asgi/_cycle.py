"""One HTTP request and its response, for an ASGI application: its ``receive`` and ``send``, and the
application's call (:meth:`RequestCycle.run`).

``receive`` reads the request body from the stream as the application asks for it (``http.request``
chunks, ``more_body`` until the last; ``Expect: 100-continue`` is answered on the first call), each
read within ``open_timeout`` (else 408 if nothing was written yet, or the connection is dropped).
Once the body is read, a receive reads on (what comes is kept for the parser: the next requests, up
to ``max_request_size``) until the client is gone or the response is complete, then gives
``http.disconnect``. A request still under way after a while (:meth:`RequestCycle.watch`, which the
HTTP server calls for each request at least a second old) gets a task of its connection's that
watches the stream likewise when no receive does: an application still running ``close_timeout``
after its client left, its response not complete, is cancelled.

``send`` takes ``http.response.start`` then ``http.response.body`` messages (``more_body`` streams
them; the head goes out with the first body, with ``Content-Length`` when the whole body is known
then, else chunked; with ``Connection: close`` when the connection ends after it: shutdown began, or
a body the client waits to send is not asked for). A message out of order raises ``RuntimeError`` in
the application; so does a response that breaks its own framing (a body longer or shorter than its
``Content-Length``, an invalid header): 500 if nothing was written yet, else the connection is
dropped. Sends to a client that is gone are dropped (ASGI HTTP spec 2.3). A body beyond
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
from ..server import HTTPConnection
from ._asgi_types import ASGIApp, Message, Scope

__all__ = ["RequestCycle", "as_bytes", "http_date"]

_PHRASES = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}
_LENGTH_HEADERS = frozenset({b"content-length", b"transfer-encoding"})
_date = (0, b"")  # (the second, its Date header)


def as_bytes(data: bytes | bytearray) -> bytes:
    """``data`` as ``bytes`` (what h11 takes), copied only if it is not."""
    return data if isinstance(data, bytes) else bytes(data)


def _disconnect() -> Message:
    return {"type": "http.disconnect"}


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
    request's head) over ``connection`` (its stream and the server's settings). ``extra_headers``:
    the server's own (``Server``: names lower-cased), unless the application gave them."""

    __slots__ = (
        "_app_scope",
        "_ended",
        "_left",
        "_peeked",
        "_watcher_done",
        "abandoned",
        "answered",
        "body_done",
        "body_given",
        "complete",
        "conn",
        "connection",
        "disconnected",
        "extra_headers",
        "head_only",
        "head_sent",
        "headers",
        "invalid",
        "listening",
        "max_body_size",
        "old",
        "received",
        "receiving",
        "started",
        "status",
        "stream",
        "watching",
    )

    def __init__(
        self,
        conn: h11.Connection,
        connection: HTTPConnection,
        *,
        head_only: bool,
        max_body_size: int | None,
        extra_headers: list[tuple[bytes, bytes]],
    ) -> None:
        self.conn = conn
        self.connection = connection
        self.stream = connection.stream
        self.head_only = head_only  # a HEAD request: the head a GET would get, no body
        self.max_body_size = max_body_size
        self.extra_headers = extra_headers
        self.body_done = False  # the parser has the whole body: the stream may be watched
        self.body_given = False  # the application received the whole body
        self.received = 0
        self.receiving = False  # (one receive at a time: it reads the stream)
        self.disconnected = False  # the client is gone (or its request was answered by us)
        self.started = False
        self.head_sent = False  # (or about to be: the response's first bytes are on their way)
        self.complete = False
        self.status: int | None = None  # the status answered, once the head is out
        self.answered: int | None = None  # the status we answered ourselves, instead of the application
        self.invalid: str | None = None  # why the application's response broke HTTP/1.1
        self.abandoned = False  # the application was cancelled: still running after its client left
        self.headers: list[tuple[bytes, bytes]] = []
        self.old = False  # (the HTTP server's mark: under way since its last look)
        self.watching = False  # a task reads the stream to see the client leave
        self.listening: trio.CancelScope | None = None  # (around watching the stream)
        self._left = connection.max_request_size + 1  # what may still be read ahead
        self._ended = trio.Event()  # the client is gone, the response complete or the request over
        self._peeked: h11.Data | h11.EndOfMessage | None = None
        self._app_scope: trio.CancelScope | None = None
        self._watcher_done: trio.Event | None = None  # (the task of watch())

    async def run(self, app: ASGIApp, scope: Scope) -> Exception | None:
        """Call ``app`` for this request; what it raised."""
        self._peek()
        error = None
        app_scope = self._app_scope = trio.CancelScope()
        try:
            with app_scope:
                await app(scope, self.receive, self.send)
        except Exception as exc:
            error = exc
        finally:
            self.abandoned = app_scope.cancelled_caught
            self._ended.set()
            done = self._watcher_done
            if done is not None:  # (it must stop reading before the next request is read)
                if self.listening is not None:
                    self.listening.cancel()
                with trio.CancelScope(shield=True):
                    await done.wait()
        return error

    def watch(self) -> None:
        """Watch the stream in a task of the connection's, if the body is read and nothing does:
        the client's leaving is then seen, and the application has ``close_timeout`` left."""
        if self.watching or not self.body_done or self._ended.is_set():
            return
        self.watching = True
        self._watcher_done = trio.Event()
        self.connection.nursery.start_soon(self._watch_task, self._watcher_done)

    async def _watch_task(self, done: trio.Event) -> None:
        try:
            await self._watch()
        finally:
            done.set()

    # ----------------------------------------------------------------- receive

    async def receive(self) -> Message:
        """The next ASGI event of the request."""
        if self.disconnected or self.complete:
            await trio.lowlevel.checkpoint()
            return _disconnect()
        if self.receiving:
            raise RuntimeError("receive() while another receive() of this request is waiting")
        self.receiving = True
        try:
            if not self.body_given:
                return await self._read_body()
            if not self.watching:  # (the stream's reader while this receive waits)
                self.watching = True
                try:
                    await self._watch()
                finally:
                    self.watching = False
            await self._ended.wait()  # (the read-ahead limit was reached: until the response is complete)
            return _disconnect()
        finally:
            self.receiving = False

    def _peek(self) -> None:
        """Take the body's first event if it is here already (a request without a body: its end)."""
        try:
            event = self.conn.next_event()
        except h11.RemoteProtocolError:  # (the body's reader meets it again)
            return
        if type(event) is h11.EndOfMessage:
            self.body_done = True
            self._peeked = event
        elif type(event) is h11.Data:
            self._peeked = event

    async def _read(self) -> bool | None:
        """Feed the next bytes from the stream to the parser: ``True``; ``False`` at the end of the
        stream, ``None`` when none came within ``open_timeout``."""
        with trio.move_on_after(self.connection.options.open_timeout):
            try:
                data = await receive_some(self.stream, 65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            self.conn.receive_data(as_bytes(data))
            return bool(data)
        return None

    async def _read_body(self) -> Message:
        conn = self.conn
        if conn.they_are_waiting_for_100_continue and not self.head_sent:
            await self._write(
                conn.send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue"))
            )
        while True:
            event: h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED] | None = self._peeked
            if event is not None:
                self._peeked = None
                await trio.lowlevel.checkpoint()
            else:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError:  # a malformed body, or the client went away in it
                    return await self._end_request(400, "malformed request body\n")
            if event is h11.NEED_DATA:
                read = await self._read()
                if read:
                    continue
                if read is None:  # (a slow body is refused as a slow head is)
                    return await self._end_request(408, "the request body took too long\n")
                return await self._end_request(0, "")  # the client is gone
            if type(event) is h11.Data:
                self.received += len(event.data)
                limit = self.max_body_size
                if limit is not None and self.received > limit:
                    return await self._end_request(413, f"the request body is over {limit} bytes\n")
                return {"type": "http.request", "body": bytes(event.data), "more_body": True}
            self.body_given = True
            if type(event) is h11.EndOfMessage:
                self.body_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            self._gone()
            return _disconnect()

    async def _end_request(self, status: int, text: str) -> Message:
        """The request cannot go on: answer ``status`` (0: nothing) if nothing was written yet."""
        if status and not self.head_sent and not self.disconnected:
            await self._answer(status, text)
        self._gone()
        return _disconnect()

    async def _watch(self) -> None:
        """Read on, once the request is read, to see the client leave; what comes (the next
        requests) is kept for the parser, up to ``max_request_size``, then reading stops."""
        with trio.CancelScope() as self.listening:  # (cancelled when the response is complete)
            while self._left > 0 and not self._ended.is_set():
                try:
                    data = await receive_some(self.stream, min(self._left, 65536))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    self._gone()
                    break
                self.conn.receive_data(as_bytes(data))
                self._left -= len(data)
        self.listening = None

    def _gone(self) -> None:
        """The client is gone, or the request is over for it: a receive gives ``http.disconnect``,
        sends are dropped, and the application has ``close_timeout`` left if its response is not
        complete."""
        self.disconnected = True
        self._ended.set()
        scope = self._app_scope
        if scope is not None and not self.complete:
            scope.deadline = min(scope.deadline, trio.current_time() + self.connection.options.close_timeout)

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
            try:
                self.headers = [(bytes(name), bytes(value)) for name, value in message.get("headers") or ()]
            except (TypeError, ValueError):
                raise RuntimeError("http.response.start's headers are pairs of byte strings") from None
            self.status = status
            self.started = True
            return await trio.lowlevel.checkpoint()
        if self.complete:
            raise RuntimeError(f"{kind!r} after the response was complete")
        if kind != "http.response.body":
            raise RuntimeError(f"expected http.response.body, got {kind!r}")
        body = message.get("body", b"")
        if type(body) is not bytes:
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise RuntimeError(f"http.response.body's body is bytes, not {type(body).__name__}")
            body = bytes(body)
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
            if body and not self.head_only:
                out.append(conn.send(h11.Data(data=body)))
            if not more:
                out.append(conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError as exc:  # its Content-Length, a bad header...
            await self._invalid(str(exc))
            raise RuntimeError(f"invalid HTTP response: {exc}") from None
        self.head_sent = True
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
        # The connection ends after this response: a shutdown began, or a body the client waits
        # to send (Expect: 100-continue) was not asked for (no telling where the next request begins).
        closing = not self.connection.accepting or self.conn.they_are_waiting_for_100_continue
        if closing and b"connection" not in given:
            headers.append((b"connection", b"close"))
        return h11.Response(status_code=status, headers=headers, reason=_PHRASES.get(status, b""))

    def _completed(self) -> None:
        self.complete = True
        self._ended.set()
        if self.listening is not None:
            self.listening.cancel()

    async def _write(self, data: bytes) -> None:
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.disconnected = True

    async def _answer(self, status: int, text: str) -> None:
        """Answer with ``status`` ourselves (and end the connection), before the application did."""
        self.status = self.answered = status
        self.head_sent = True
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in self.extra_headers]
        await self._write(error_response(status, text, headers))
        self.conn.send_failed()  # (h11 knows nothing of it: this connection is done)

    async def _invalid(self, detail: str) -> None:
        """The application's response breaks HTTP/1.1: 500 if nothing was written yet, else the
        connection is dropped; what it sends next is dropped."""
        self.invalid = detail
        if not self.head_sent and not self.disconnected:
            await self._answer(500, "internal server error\n")
        self.disconnected = True

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
