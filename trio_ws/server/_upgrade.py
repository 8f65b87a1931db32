"""The opening handshake on the server, up to the handler: read the request (bounded in size and
time), run the HTTP hook, validate the upgrade, apply the connection caps and the handshake policy,
and make the :class:`~trio_ws.WebSocket` the handler gets, ready to be accepted.
"""

from __future__ import annotations

import collections
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import trio

from ..connection import (
    BufferBudget,
    HTTPResponse,
    Registry,
    Request,
    ServerHandshake,
    WebSocket,
    WebSocketOptions,
    answer_and_linger,
    receive_some,
)
from ..protocol import HandshakeError, RequestHead, RequestParser, Role, error_response, validate_request
from ._access import AccessRecord
from ._handoff import HTTPConnection, HTTPHandler, IdleConnections, Upgrade
from ._proxies import Network, apply_forwarded

__all__ = ["Handler", "HandshakePolicy", "ProcessRequest", "ProcessResponse", "Upgrader", "http_answer"]

logger = logging.getLogger("trio_ws")

Handler = Callable[..., Awaitable[None]]
"""``async def handler(ws: WebSocket, **path_params) -> None``; a ``Router`` is one too."""
ProcessRequest = Callable[[Request], Awaitable[HTTPResponse | None]]
"""``async def process_request(request: Request) -> HTTPResponse | None``: the server's HTTP hook."""
ProcessResponse = Callable[[WebSocket, list[tuple[str, str]]], Awaitable[HTTPResponse | None]]
"""``async def process_response(ws: WebSocket, headers: list[tuple[str, str]]) -> HTTPResponse | None``:
the server's hook on the 101, called when the handler accepts, before the 101 is written. ``headers``
are the response's own headers (``accept(headers=...)`` and ``Server``), which it may change in place;
``None`` goes on with them, an ``HTTPResponse`` refuses the handshake with it instead."""


class HandshakePolicy(Protocol):
    """What the server asks of an upgrade request before the handler runs (origins, rate limits,
    authentication, guards: the application layer's ``SecurityPolicy`` is one)."""

    async def check(self, request: Request) -> tuple[HTTPResponse | None, Any, Any]:
        """``(refusal, None, None)``, or ``(None, principal, backend)`` to go on."""


def http_answer(response: HTTPResponse, request: Request) -> bytes:
    """``response`` on the wire; for a HEAD request, the head a GET would get, without the body."""
    body = response.body
    data = error_response(response.status, body, response.headers, content_type=response.content_type)
    return data[: -len(body)] if request.method == "HEAD" and body else data


class Upgrader:
    """The server's settings for opening handshakes, and the count of connections per client."""

    def __init__(
        self,
        options: WebSocketOptions,
        registry: Registry[WebSocket],
        *,
        subprotocols: tuple[str, ...],
        server_header: str | None,
        max_request_size: int,
        process_request: ProcessRequest | None,
        process_response: ProcessResponse | None,
        policy: HandshakePolicy | None,
        max_connections_per_client: int | None,
        trusted_proxies: tuple[Network, ...],
        budget: BufferBudget,
        proxy_headers: str = "x-forwarded",
        http: HTTPHandler | None = None,
        access_log_query: bool = False,
    ) -> None:
        self.options = options
        self.registry = registry
        self.subprotocols = subprotocols
        self.server_header = server_header
        self.max_request_size = max_request_size
        self.process_request = process_request
        self.process_response = process_response
        self.policy = policy
        self.max_connections_per_client = max_connections_per_client
        self.trusted_proxies = trusted_proxies
        self.proxy_headers = proxy_headers
        self.per_client: collections.Counter[str] = collections.Counter()
        self.budget = budget
        #: What serves connections whose first request is plain HTTP (``None``: they get 426).
        self.http = http
        self.access_log_query = access_log_query
        #: The HTTP connections waiting for a request, which a shutdown closes.
        self.idle = IdleConnections(registry)

    def refusal(self, status: int, text: str, headers: Sequence[tuple[str, str]] = ()) -> bytes:
        """A refusal on the wire; with the ``Server`` header when an HTTP handler serves plain
        requests (its refusals have it: the first request's and the later ones' look alike)."""
        if self.http is not None and self.server_header is not None:
            headers = [*headers, ("Server", self.server_header)]
        return error_response(status, text, headers)

    async def answer(self, stream: trio.abc.Stream, record: AccessRecord, data: bytes) -> None:
        """Answer with ``data`` (an HTTP response) and end the connection (the caller closes it)."""
        record.status = data[9:12].decode("latin-1")
        await answer_and_linger(stream, data, self.options.close_timeout)

    def release_host(self, host: str) -> None:
        """A connection counted for ``host`` is over."""
        self.per_client[host] -= 1
        if not self.per_client[host]:
            del self.per_client[host]

    async def upgrade(
        self,
        stream: trio.abc.Stream,
        record: AccessRecord,
        reading: trio.CancelScope,
        nursery: trio.Nursery,
        *,
        scheme: str | None = None,
        root_path: str = "",
    ) -> WebSocket | None:
        """The opening handshake up to the handler: the WebSocket to hand it, or ``None`` when the
        request was answered otherwise. ``reading`` bounds reading the request (``open_timeout``;
        cancelled by a shutdown, which is answered with 503). ``scheme`` (default: ``wss`` over
        TLS, else ``ws``) and ``root_path`` go to the request. (The handler does not run in here:
        an idle connection's task holds as few coroutine frames as it can.)"""
        if not self.registry.accepting:
            await self.answer(stream, record, self.refusal(503, "server shutting down"))
            return None
        parser = RequestParser(max_size=self.max_request_size)
        request = None
        refused = False  # (the parser refused a head the HTTP handler judges)
        chunks: list[bytes | bytearray]  # (read with an HTTP handler only)
        try:
            with reading:
                if isinstance(stream, trio.SSLStream):
                    await stream.do_handshake()
                if self.http is None:
                    while request is None:
                        request = parser.receive_data(await receive_some(stream, 65536))
                else:  # the bytes are kept: a plain HTTP request goes to the HTTP handler whole
                    chunks = []
                    try:
                        while request is None:
                            chunks.append(await receive_some(stream, 65536))
                            request = parser.receive_data(chunks[-1])
                    except HandshakeError:  # (the handler's parser judges it, as every later request)
                        if not any(chunks):
                            raise
                        refused = True
            if request is None and not refused:
                if self.http is not None and self.registry.accepting and any(chunks):
                    await self.answer(stream, record, self.refusal(408, "the request head took too long\n"))
                elif self.registry.accepting:
                    logger.debug("opening handshake timed out")
                else:  # a shutdown stopped the reading
                    await self.answer(stream, record, self.refusal(503, "server shutting down\n"))
                return None
            trailing = parser.trailing
            del parser  # (this frame lives as long as the connection)
            if scheme is None:
                scheme = "wss" if isinstance(stream, trio.SSLStream) else "ws"
            req = None if request is None else self._request(request, record, scheme, root_path)
            if self.http is not None and (request is None or not request.is_upgrade):
                data = b"".join(chunks)
                del chunks
                upgrade = await self._hand_off(stream, record, nursery, req, data, scheme, root_path)
                if upgrade is None:
                    return None
                request, trailing = upgrade
                req = self._request(request, record, scheme, root_path)
            assert request is not None
            assert req is not None
            if self.process_request is not None and await self._process_request(stream, record, req):
                return None
            key = validate_request(request)
        except HandshakeError as exc:
            await self.answer(stream, record, self.refusal(exc.status, exc.reason + "\n", exc.headers))
            return None
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError):
            return None
        budget = self.budget
        if budget.used >= budget.limit:  # every byte the server may hold is held: come back later
            refusal = self.refusal(503, "server overloaded\n", [("Retry-After", "1")])
            await self.answer(stream, record, refusal)
            return None
        host = req.client[0] if req.client else "-"
        limit = self.max_connections_per_client
        if limit is not None and self.per_client[host] >= limit:
            refusal = self.refusal(429, "too many connections from this address\n", [("Retry-After", "1")])
            await self.answer(stream, record, refusal)
            return None
        self.per_client[host] += 1
        record.host = host
        ws = None
        try:
            handshake = ServerHandshake(key, trailing, budget=self.budget)
            ws = await self._admit(stream, record, nursery, req, handshake)
        finally:
            if ws is None:
                self.release_host(host)
        return ws

    def _request(self, head: RequestHead, record: AccessRecord, scheme: str, root_path: str) -> Request:
        """``head`` as the connection's request (what trusted proxies forward applied)."""
        request = Request(head, scheme=scheme, client=record.client, root_path=root_path)
        apply_forwarded(request, self.trusted_proxies, self.proxy_headers)
        record.request = request
        return request

    async def _hand_off(
        self,
        stream: trio.abc.Stream,
        record: AccessRecord,
        nursery: trio.Nursery,
        request: Request | None,
        data: bytes,
        scheme: str,
        root_path: str,
    ) -> Upgrade | None:
        """The HTTP handler serves the connection; a later upgrade request comes back."""
        assert self.http is not None
        connection = HTTPConnection(
            stream,
            data,
            request,
            record,
            self.idle,
            nursery,
            scheme=scheme,
            root_path=root_path,
            options=self.options,
            max_request_size=self.max_request_size,
            server_header=self.server_header,
            process_request=self.process_request,
            trusted_proxies=self.trusted_proxies,
            proxy_headers=self.proxy_headers,
            access_log_query=self.access_log_query,
        )
        record.quiet = True  # (each request has its access line)
        upgrade = await self.http.serve_http(connection)
        record.quiet = upgrade is None
        return upgrade

    async def _admit(
        self,
        stream: trio.abc.Stream,
        record: AccessRecord,
        nursery: trio.Nursery,
        req: Request,
        handshake: ServerHandshake,
    ) -> WebSocket | None:
        """The handshake policy; the WebSocket for the handler if it lets the request through."""
        principal = backend = None
        if self.policy is not None:
            try:
                refusal, principal, backend = await self.policy.check(req)
            except Exception:  # an authentication backend or a guard failed: ours to log, not theirs
                logger.exception("security checks failed for %s", req.target)
                refusal = HTTPResponse(500, "internal server error\n")
            if refusal is not None:
                await self.answer(stream, record, http_answer(refusal, req))
                return None
        handshake.subprotocols = self.subprotocols
        handshake.server_header = self.server_header
        handshake.process_response = self.process_response
        ws = WebSocket(
            stream,
            Role.SERVER,
            self.options,
            request=req,
            client=req.client,
            handshake=handshake,
            nursery=nursery,
            registry=self.registry,
        )
        ws.user, ws.auth = principal, backend
        record.ws = ws
        return ws

    async def _process_request(self, stream: trio.abc.Stream, record: AccessRecord, request: Request) -> bool:
        """Run the HTTP hook; answer and return ``True`` if it answered."""
        assert self.process_request is not None
        try:
            response = await self.process_request(request)
        except Exception:
            logger.exception("process_request failed for %s", request.target)
            response = HTTPResponse(500, "internal server error\n")
        if response is None:
            return False
        await self.answer(stream, record, http_answer(response, request))
        return True
