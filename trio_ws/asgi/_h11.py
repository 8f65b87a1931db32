"""The HTTP/1.1 side of the ASGI server: the server's HTTP handler, which serves a connection's
plain requests with h11 (keep-alive, pipelining as h11 allows it, chunked bodies) and hands back a
later request that asks for a WebSocket upgrade.

Limits: a request head within the server's ``max_request_size`` (431), read within its
``open_timeout`` once it began (408); ``keep_alive_timeout`` between requests (then the connection
closes); a body within ``max_body_size`` (413), each of its reads within ``open_timeout`` (408). A
malformed request gets 400, from h11's verdict (the first request's too: the server hands a head its
own parser refuses to h11); the refusals say which limit, never what the client sent (that is
logged at DEBUG). At shutdown an idle connection closes at once; one with a response under way
closes after it.
"""

from __future__ import annotations

import contextlib
from http import HTTPStatus
from typing import Any, final
from urllib.parse import unquote

import h11
import trio

from ..connection import (
    HTTPResponse,
    Request,
    answer_and_linger,
    receive_some,
    scope_address,
    socket_addresses,
)
from ..protocol import Headers, RequestHead, error_response
from ..server import HTTPConnection, Upgrade, http_answer
from ._asgi_types import ASGIApp, logger, split_target
from ._cycle import RequestCycle, as_bytes

__all__ = ["H11Server"]

#: What a refusal says, by status (never the request's bytes).
_REFUSALS = {
    400: "malformed request\n",
    408: "the request head took too long\n",
    431: "request head too large\n",
    503: "server shutting down\n",
}


def _refusal(status: int) -> str:
    if status in _REFUSALS:
        return _REFUSALS[status]
    try:
        return f"{HTTPStatus(status).phrase.lower()}\n"
    except ValueError:
        return "malformed request\n"


#: Seconds between the looks at the requests under way (those seen at two looks are watched).
WATCH_INTERVAL = 1.0


@final
class H11Server:
    """The server's HTTP handler for ``app`` (see the module); ``state``: the lifespan state, a
    shallow copy of which each request's scope gets. :meth:`watch_requests` runs beside it."""

    __slots__ = ("_watching", "app", "keep_alive_timeout", "max_body_size", "requests", "root_path", "state")

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
        #: The requests whose application runs.
        self.requests: set[RequestCycle] = set()
        self._watching = trio.CancelScope()

    async def watch_requests(self) -> None:
        """Until :meth:`stop`: every second, each request under way since the last look gets
        its stream watched (:meth:`RequestCycle.watch`): a request served in less costs nothing."""
        with self._watching:
            while True:
                await trio.sleep(WATCH_INTERVAL)
                for cycle in self.requests:
                    if cycle.old:
                        cycle.watch()
                    cycle.old = True

    def stop(self) -> None:
        """End :meth:`watch_requests`."""
        self._watching.cancel()

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
            request = self.connection.request if first else None  # (None: the server's parser refused it)
            if request is None:
                request = self.connection.request_for(self._head(event))
            first = False
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
            await self._refuse(408 if self.connection.accepting else 503)
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
                await self._refuse(exc.error_status_hint, detail=str(exc))
                return None
            if type(event) is h11.Request:
                # (h11 bounds a head still arriving, not one that came whole)
                size = (
                    len(event.method) + len(event.target) + sum(len(n) + len(v) + 4 for n, v in event.headers)
                )
                if size > self.connection.max_request_size:
                    await self._refuse(431)
                    return None
                return event
            if event is not h11.NEED_DATA or not await self._feed(idle):
                return None
            idle = False

    async def _refuse(
        self, status: int, text: str | None = None, request: Request | None = None, detail: str | None = None
    ) -> None:
        """Answer ``status`` (with ``text``, else the status's fixed one) and end the connection
        (lingering: what the client still sends is read, so that its answer is not lost to a
        reset); ``detail`` (what was wrong with the request) is only logged, at DEBUG."""
        text = _refusal(status) if text is None else text
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in self.extra_headers]
        data = error_response(status, text, headers)
        await answer_and_linger(self.connection.stream, data, self.connection.options.close_timeout)
        logger.debug("HTTP request refused with %d: %s", status, detail or text.strip())
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
                await self._refuse(exc.error_status_hint, detail=str(exc))
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
        raw_path, query = split_target(event.target)
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
            self.connection,
            head_only=request.method == "HEAD",
            max_body_size=limit,
            extra_headers=self.extra_headers,
        )
        requests = self.server.requests
        requests.add(cycle)
        try:
            error = await cycle.run(self.server.app, self._scope(event, request))
        finally:
            requests.discard(cycle)
        if error is not None or not cycle.complete:
            self._report(cycle, error, request)
            await cycle.fail()
        self.connection.log(request, cycle.status if cycle.head_sent else None, start)
        if cycle.answered is not None:  # (a refusal of ours: lingering, as above)
            await answer_and_linger(self.connection.stream, b"", self.connection.options.close_timeout)
        return cycle.reusable

    @staticmethod
    def _report(cycle: RequestCycle, error: Exception | None, request: Request) -> None:
        """One log line for a request that did not end with a whole response (a traceback only
        for an application's own error)."""
        what = f"{request.method} {request.path}"
        if cycle.invalid is not None:  # (what the application raised, if it did, is our RuntimeError)
            outcome = "answered 500" if cycle.answered == 500 else "connection dropped"
            logger.error(
                "ASGI application's response to %s is not valid HTTP (%s): %s", what, cycle.invalid, outcome
            )
        elif error is not None and cycle.disconnected:  # (what an application does when its client is gone)
            name = type(error).__name__
            logger.info(
                "ASGI application raised %s for %s once the client was gone (or answered)", name, what
            )
        elif error is not None:
            logger.error("ASGI application failed for %s", what, exc_info=error)
        elif cycle.abandoned:
            timeout = cycle.connection.options.close_timeout
            logger.info(
                "ASGI application for %s was still running %ss after its request ended; cancelled",
                what,
                timeout,
            )
        elif not cycle.disconnected:
            missing = "its whole response" if cycle.started else "a response"
            logger.error("ASGI application returned without %s for %s", missing, what)

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
