"""The server's half of the opening handshake, as a connection waiting for ``accept()`` holds it.

The server reads the request and runs its HTTP hook and security policy; what is left for the
handler to decide — the subprotocol, extra response headers — :meth:`ServerHandshake.answer` turns
into the 101 response and the protocol connection, with the pure negotiation functions of
``trio_ws.protocol``. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

import attrs

from ..protocol import (
    Connection,
    Role,
    build_response,
    choose_subprotocol,
    negotiate_deflate,
    parse_extensions,
)
from ._budget import BufferBudget
from ._options import WebSocketOptions
from ._request import Request

__all__ = ["Answer", "Registry", "ServerHandshake"]

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


#: What accepting a request agreed on: the response bytes, the connection to run, the subprotocol
#: and the extensions (as in the response).
Answer = tuple[bytes, Connection, "str | None", "list[str]"]


@attrs.define(eq=False, slots=True)
class ServerHandshake:
    """A validated upgrade request waiting for the handler's ``accept()``.

    ``key``: its ``Sec-WebSocket-Key``; ``trailing``: bytes that came after the request (the first
    frames of an eager client); ``subprotocols``: those the server speaks here, in case the handler
    does not choose (a route may narrow them); ``server_header``: the ``Server`` response header;
    ``budget``: the server's :class:`BufferBudget`, which the connection's buffers count against.
    """

    key: str
    trailing: bytes = b""
    subprotocols: tuple[str, ...] = ()
    server_header: str | None = "trio_ws"
    budget: BufferBudget | None = None  # the server's, if it has one

    def answer(
        self,
        request: Request,
        options: WebSocketOptions,
        subprotocol: str | None,
        headers: Sequence[tuple[str, str]],
    ) -> Answer:
        """The 101 response and the protocol connection for ``request``. Raises ``ValueError`` for a
        ``subprotocol`` the client did not offer."""
        chosen = choose_subprotocol(request.subprotocols, self.subprotocols, subprotocol)
        if self.server_header is not None:
            headers = [*headers, ("Server", self.server_header)]
        deflate = None
        if options.compression is not None:
            deflate = negotiate_deflate(parse_extensions(request.headers), options.compression)
        extensions = None if deflate is None else deflate.response_params()
        response = build_response(self.key, subprotocol=chosen, extensions=extensions, headers=headers)
        conn = Connection(Role.SERVER, max_message_size=options.max_message_size, extension=deflate)
        return response, conn, chosen, [] if extensions is None else [extensions]
