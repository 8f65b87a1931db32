"""The ASGI types (as Starlette spells them, so that its applications type-check), the exception an
application's ``send`` raises once the client is gone, the logger, and a request target's parts."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["ASGIApp", "ClientDisconnected", "Message", "Receive", "Scope", "Send", "logger", "split_target"]

Scope = MutableMapping[str, Any]
"""An ASGI connection scope."""
Message = MutableMapping[str, Any]
"""An ASGI event or message."""
Receive = Callable[[], Awaitable[Message]]
"""An ASGI ``receive`` callable."""
Send = Callable[[Message], Awaitable[None]]
"""An ASGI ``send`` callable."""
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
"""An ASGI 3 application: ``async def app(scope, receive, send) -> None``."""

logger = logging.getLogger("trio_ws.asgi")


class ClientDisconnected(OSError):
    """Raised in the application by ``send`` once the client is gone (ASGI spec 2.4: a subclass of
    ``OSError``); Starlette turns it into its ``WebSocketDisconnect`` (code 1006)."""


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """A request target's path (as sent: percent-encoded) and query string, for a scope's
    ``raw_path`` and ``query_string``: of the origin form (``/path?query``), or of the absolute form
    (``http://host/path?query``, RFC 9112 section 3.2.2), whose path is the part after the host."""
    path, _, query = target.partition(b"?")
    if not path.startswith(b"/"):
        scheme, slashes, rest = path.partition(b"://")
        if slashes and scheme:
            path = b"/" + rest.partition(b"/")[2]
    return path, query
