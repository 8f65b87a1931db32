"""The ASGI types (as Starlette spells them, so that its applications type-check), the exception an
application's ``send`` raises once the client is gone, and the logger."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["ASGIApp", "ClientDisconnected", "Message", "Receive", "Scope", "Send", "logger"]

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
