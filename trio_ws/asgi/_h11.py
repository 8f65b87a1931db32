"""The HTTP/1.1 side of the ASGI server: the server's HTTP handler, which serves a connection's
plain requests with h11 (keep-alive, pipelining as h11 allows it, chunked bodies) and hands back a
later request that asks for a WebSocket upgrade.

Limits: a request head within the server's ``max_request_size`` (431), read within its
``open_timeout`` once it began (408); ``keep_alive_timeout`` between requests (then the connection
closes); a body within ``max_body_size`` (413). A malformed request gets 400, from h11's verdict.
At shutdown an idle connection closes at once; one with a response under way closes after it.
"""

from __future__ import annotations

import contextlib
from typing import Any, final
from urllib.parse import unquote

import h11
import trio

from ..connection import HTTPResponse, Request, receive_some, scope_address, socket_addresses
from ..protocol import Headers, RequestHead, error_response
from ..server import HTTPConnection, Upgrade, http_answer
from ._asgi_types import ASGIApp, logger
from ._cycle import RequestCycle, as_bytes

__all__ = ["H11Server"]


@final
class H11Server:
    """The server's HTTP handler for ``app`` (see the module); ``state``: the lifespan state, a
    shallow copy of which each request's scope gets."""

    __slots__ = ("app", "keep_alive_timeout", "max_body_size", "root_path", "state")

    def __init__(
        self,
        app: ASGIApp,
        *,
        root_path: str,
        state: dict[str, Any],
        keep_alive_timeout: float,
        max_body_size: int | None,
    ) -> None:
        self.app = app
        self.root_path = root_path
        self.state = state
        self.keep_alive_timeout = keep_alive_timeout
        self.max_body_size = max_body_size

    async def serve_http(self, connection: HTTPConnection) -> Upgrade | None:
        """Serve ``connection``'s requests (see the module)."""
        return await H11Connection(self, connection).run()


@final
class H11Connection:
    """One connection's requests, one after the other."""

    __slots__ = ("conn", "connection", "deadline", "extra_headers", "server", "server_address")

    def __init__(self, server: H11Server, connection: HTTPConnection) -> None:
        self.server = server
        self.connection = connection
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=connection.max_request_size)
        addresses = socket_addresses(connection.stream)
        self.server_address = None if addresses is None else scope_address(addresses[0])
        header = connection.server_header
        self.extra_headers = [] if header is None else [(b"server", header.encode("latin-1"))]
        self.deadline = 0.0  # when the request head being read is due

    async def run(self) -> Upgrade | None:
        conn = self.conn
        conn.receive_data(self.connection.data)
        first = True
        while True:
            event = await self._next_request(first)
            if event is None:
                return None
            if first:
                request, first = self.connection.request, False
            else:
                request = self.connection.request_for(self._head(event))
            if request.is_upgrade:
                return await self._upgrade(request)
            if not await self._serve(event, request):
                return None
            if conn.their_state is h11.SEND_BODY:  # the application left (some of) the body
                if "100-continue" in request.headers.get("expect", "").lower():
                    return None  # (the client may send it or not: no telling where the next request begins)
                if not await self._drain():
                    return None
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return None
            if not self.connection.accepting:
                return None
            conn.start_next_cycle()

    @staticmethod
    def _head(event: h11.Request) -> RequestHead:
        return RequestHead(
            method=event.method.decode("ascii"),
            target=event.target.decode("latin-1"),
            headers=Headers(event.headers.raw_items()),
            http_version=event.http_version.decode("ascii"),
        )

    # ------------------------------------------------------- reading requests

    async def _feed(self, idle: bool, answer: bool = True) -> bool:
        """Read more of a request (``idle``: none of it came yet) within the keep-alive timeout,
        or the head's; ``False`` when there is nothing more to read (closed, timed out, shutdown):
        a request begun is then answered (unless not ``answer``), 408 or 503."""
        deadline = trio.current_time() + self.server.keep_alive_timeout if idle else self.deadline
        data: bytes | bytearray = b""
        with self.connection.waiting() as scope:
            scope.deadline = deadline
            try:
                data = await receive_some(self.connection.stream, 65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
        if scope.cancelled_caught and not idle and answer:
            if self.connection.accepting:
                await self._refuse(408, "the request head took too long\n")
            else:
                await self._refuse(503, "server shutting down\n")
        if not data:
            return False
        if idle:  # (the head's time runs from its first bytes)
            self.deadline = trio.current_time() + self.connection.options.open_timeout
        self.conn.receive_data(as_bytes(data))
        return True

    async def _next_request(self, first: bool) -> h11.Request | None:
        """The next request's head; ``None`` when the connection is done (answered if it must)."""
        idle = not first and not self.conn.trailing_data[0]
        if not idle:
            self.deadline = trio.current_time() + self.connection.options.open_timeout
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                await self._refuse(exc.error_status_hint, f"invalid request: {exc}\n")
                return None
            if type(event) is h11.Request:
                # (h11 bounds a head still arriving, not one that came whole)
                size = (
                    len(event.method) + len(event.target) + sum(len(n) + len(v) + 4 for n, v in event.headers)
                )
                if size > self.connection.max_request_size:
                    await self._refuse(431, "request head too large\n")
                    return None
                return event
            if event is not h11.NEED_DATA or not await self._feed(idle):
                return None
            idle = False

    async def _refuse(self, status: int, text: str, request: Request | None = None) -> None:
        """Answer ``status`` and end the connection."""
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in self.extra_headers]
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.connection.stream.send_all(error_response(status, text, headers))
        logger.debug("HTTP request refused with %d: %s", status, text.strip())
        if request is not None:
            self.connection.log(request, status, trio.current_time())

    async def _drain(self) -> bool:
        """Read the rest of a request body the application left (within ``max_body_size``)."""
        left = self.server.max_body_size
        self.deadline = trio.current_time() + self.connection.options.open_timeout
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError:
                return False
            if type(event) is h11.EndOfMessage:
                return True
            if type(event) is h11.Data:
                if left is not None:
                    left -= len(event.data)
                    if left < 0:
                        return False
            elif event is not h11.NEED_DATA or not await self._feed(False, answer=False):
                return False

    async def _upgrade(self, request: Request) -> Upgrade | None:
        """Hand the upgrade request back to the server, with the bytes after it."""
        self.deadline = trio.current_time() + self.connection.options.open_timeout
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                await self._refuse(exc.error_status_hint, f"invalid request: {exc}\n")
                return None
            if event is h11.PAUSED:
                break
            if event is h11.NEED_DATA and not await self._feed(False):
                return None
            if type(event) is h11.ConnectionClosed:
                return None
        return request.raw, bytes(self.conn.trailing_data[0])

    # ------------------------------------------------------------ one request

    def _scope(self, event: h11.Request, request: Request) -> dict[str, Any]:
        root = self.server.root_path
        raw_path, _, query = event.target.partition(b"?")
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.http_version,
            "server": self.server_address,
            "client": request.client,
            "scheme": "https" if request.scheme == "wss" else "http",
            "method": request.method,
            "root_path": root + request.root_path,
            "path": root + unquote(raw_path.decode("latin-1")),
            "raw_path": root.encode("latin-1") + raw_path,
            "query_string": query,
            "headers": list(event.headers),
            "state": self.server.state.copy(),
        }

    async def _serve(self, event: h11.Request, request: Request) -> bool:
        """Serve one request; whether the connection may go on."""
        start = trio.current_time()
        if self.connection.process_request is not None and await self._hook(request):
            return False
        limit = self.server.max_body_size
        lengths = request.headers.getlist("content-length")
        if limit is not None and lengths and lengths[0].isdigit() and int(lengths[0]) > limit:
            await self._refuse(413, f"the request body is over {limit} bytes\n", request)
            return False
        cycle = RequestCycle(
            self.conn,
            self.connection.stream,
            head_only=request.method == "HEAD",
            max_body_size=limit,
            pipelined_limit=self.connection.max_request_size,
            extra_headers=self.extra_headers,
            close=not self.connection.accepting,
        )
        try:
            await self.server.app(self._scope(event, request), cycle.receive, cycle.send)
        except Exception as exc:
            if cycle.disconnected:  # (what an application does when its client is gone: one line)
                logger.info(
                    "ASGI application raised %s for %s %s once the client was gone (or answered)",
                    type(exc).__name__,
                    request.method,
                    request.path,
                )
            else:
                logger.exception("ASGI application failed for %s %s", request.method, request.path)
            await cycle.fail()
        else:
            if not cycle.complete:
                what = "a response" if not cycle.started else "its whole response"
                logger.error(
                    "ASGI application returned without %s for %s %s", what, request.method, request.path
                )
                await cycle.fail()
        self.connection.log(request, cycle.status if cycle.head_sent else None, start)
        return cycle.reusable

    async def _hook(self, request: Request) -> bool:
        """The server's ``process_request`` hook; ``True`` if it answered (the connection ends)."""
        hook = self.connection.process_request
        assert hook is not None
        response: HTTPResponse | None
        try:
            response = await hook(request)
        except Exception:
            logger.exception("process_request failed for %s", request.target)
            response = HTTPResponse(500, "internal server error\n")
        if response is None:
            return False
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.connection.stream.send_all(http_answer(response, request))
        self.connection.log(request, response.status, trio.current_time())
        return True
