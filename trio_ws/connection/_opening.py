"""The server's half of the opening handshake, as a connection waiting for ``accept()`` holds it.

The server reads the request and runs its HTTP hook and security policy; what is left for the
handler to decide — the subprotocol, extra response headers — :meth:`ServerHandshake.answer` turns
into the 101 response and the protocol connection, with the pure negotiation functions of
``trio_ws.protocol``, once the server's ``process_response`` hook (if any) has seen the headers.
Nothing here does I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

import attrs

from ..protocol import (
    Connection,
    Role,
    build_response,
    choose_subprotocol,
    error_response,
    negotiate_deflate,
    parse_extensions,
)
from ._budget import BufferBudget
from ._options import WebSocketOptions
from ._request import HTTPResponse, Request

__all__ = ["Answer", "Refusal", "Registry", "ResponseHook", "ServerHandshake"]

logger = logging.getLogger("trio_ws")

C = TypeVar("C", contravariant=True)


class Registry(Protocol[C]):
    r"""What a server's connections tell it (the server implements it for its ``WebSocket``\ s)."""

    @property
    def accepting(self) -> bool:
        """``False`` while the server shuts down: ``accept()`` then answers 503."""

    def opened(self, connection: C) -> None:
        """``connection`` was accepted."""

    def closed(self, connection: C) -> None:
        """``connection`` is closed: nothing more will be received (called once)."""


#: What accepting a request agreed on: the response bytes, the connection to run and the extensions
#: (as in the response).
Answer = tuple[bytes, Connection, "list[str]"]

#: The server's ``process_response`` hook, as the handshake holds it (the first argument is the
#: ``WebSocket`` being accepted; see ``trio_ws.ProcessResponse``).
ResponseHook = Callable[[Any, list[tuple[str, str]]], Awaitable["HTTPResponse | None"]]

#: The headers of a 101 that only the handshake writes (a ``process_response`` hook may not add them).
_HANDSHAKE_HEADERS = frozenset(
    {"upgrade", "connection", "sec-websocket-accept", "sec-websocket-protocol", "sec-websocket-extensions"}
)


@attrs.frozen
class Refusal:
    """The HTTP response that refuses the handshake instead of the 101: its ``status`` and bytes."""

    status: int
    data: bytes


@attrs.define(eq=False, slots=True)
class ServerHandshake:
    """A validated upgrade request waiting for the handler's ``accept()``.

    ``key``: its ``Sec-WebSocket-Key``; ``trailing``: bytes that came after the request (the first
    frames of an eager client); ``subprotocols``: those the server speaks here, in case the handler
    does not choose (a route may narrow them); ``server_header``: the ``Server`` response header;
    ``budget``: the server's :class:`BufferBudget`, which the connection's buffers count against;
    ``process_response``: the server's hook on the 101's headers.
    """

    key: str
    trailing: bytes = b""
    subprotocols: tuple[str, ...] = ()
    server_header: str | None = "trio_ws"
    budget: BufferBudget | None = None  # the server's, if it has one
    process_response: ResponseHook | None = None

    def choose(self, request: Request, subprotocol: str | None) -> str | None:
        """The subprotocol to answer with: ``subprotocol`` (``ValueError`` if the client did not offer
        it), or the first the client offered that the server speaks here."""
        return choose_subprotocol(request.subprotocols, self.subprotocols, subprotocol)

    async def answer(
        self,
        ws: Any,
        request: Request,
        options: WebSocketOptions,
        subprotocol: str | None,
        headers: Sequence[tuple[str, str]],
    ) -> Answer | Refusal:
        """The 101 response (with ``subprotocol``, from :meth:`choose`) and the protocol connection
        for ``ws``'s ``request``; or, if the ``process_response`` hook refuses or fails, the
        response that refuses it (a failure is logged, and answered with 500). Raises
        ``ValueError`` for ``headers`` that cannot be sent (CR, LF...)."""
        fields = [*headers]
        if self.server_header is not None:
            fields.append(("Server", self.server_header))
        deflate = None
        if options.compression is not None:
            deflate = negotiate_deflate(parse_extensions(request.headers), options.compression)
        extensions = None if deflate is None else deflate.response_params()
        response = build_response(self.key, subprotocol=subprotocol, extensions=extensions, headers=fields)
        if self.process_response is not None:
            hooked = await self._run_hook(ws, request, fields, subprotocol, extensions)
            if isinstance(hooked, Refusal):
                return hooked
            response = hooked
        conn = Connection(Role.SERVER, max_message_size=options.max_message_size, extension=deflate)
        return response, conn, [] if extensions is None else [extensions]

    async def _run_hook(
        self,
        ws: Any,
        request: Request,
        fields: list[tuple[str, str]],
        subprotocol: str | None,
        extensions: str | None,
    ) -> bytes | Refusal:
        """``process_response`` on ``fields``: the 101 it leaves, or the response that refuses."""
        assert self.process_response is not None
        given = list(fields)
        try:
            refusal = await self.process_response(ws, fields)
            if refusal is None:
                for name, value in fields:
                    if name.lower() in _HANDSHAKE_HEADERS and (name, value) not in given:
                        raise ValueError(f"the {name} header of a 101 is the handshake's own")
                return build_response(
                    self.key, subprotocol=subprotocol, extensions=extensions, headers=fields
                )
            if not 200 <= refusal.status <= 599:
                raise ValueError(f"process_response may refuse with 2xx-5xx, not {refusal.status}")
            data = error_response(
                refusal.status, refusal.body, refusal.headers, content_type=refusal.content_type
            )
            return Refusal(refusal.status, data)
        except Exception:
            logger.exception("process_response failed for %s", request.target)
            return Refusal(500, error_response(500, "internal server error\n"))
