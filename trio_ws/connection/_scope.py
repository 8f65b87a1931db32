"""What code written for Starlette and ASGI looks for on a connection: ``ws.state`` (a namespace of
the application's own), ``ws.scope`` (an ASGI-style websocket scope, read-only) and the socket
addresses of the stream, ``ws.local_address`` and ``ws.remote_address``.

:class:`ScopeView` is a base of :class:`~trio_ws.WebSocket`; it reads only the connection's public
``stream`` and ``request``. :func:`websocket_scope` makes the scope as a new dict, for the ASGI
server too.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, final

import trio

from ._request import Request

__all__ = ["ASGI_VERSION", "ScopeView", "State", "scope_address", "socket_addresses", "websocket_scope"]

#: The ``asgi`` key of the scopes: ASGI 3.0, the WebSocket part of the spec at 2.4.
ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}


@final
class State:
    """A namespace for whatever an application keeps per connection: ``ws.state.user_id = 42``,
    then ``ws.state.user_id``; ``del ws.state.user_id``. Reading or deleting an attribute that was
    never set raises ``AttributeError`` naming it. ``State(values)`` starts with ``values`` (a
    mapping of names to values); ``vars(state)`` is every attribute set."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        for name, value in (values or {}).items():
            setattr(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)

    def __getattr__(self, name: str) -> Any:  # (called only for an attribute that is not set)
        if name.startswith("__"):  # what copy, pickle and the like probe for
            raise AttributeError(name)
        raise AttributeError(f"the state has no attribute {name!r}: set it first (state.{name} = ...)")

    def __delattr__(self, name: str) -> None:
        if name not in self.__dict__:
            raise AttributeError(f"the state has no attribute {name!r} to delete")
        super().__delattr__(name)

    def __repr__(self) -> str:
        return f"State({self.__dict__!r})"


def socket_addresses(stream: trio.abc.Stream) -> tuple[Any, Any] | None:
    """``(getsockname(), getpeername())`` of the socket under ``stream`` (a ``trio.SocketStream``,
    or TLS over one); ``None`` for a stream without a socket, or once the socket is closed."""
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if not isinstance(stream, trio.SocketStream):
        return None
    try:
        return stream.socket.getsockname(), stream.socket.getpeername()
    except OSError:  # closed, or the peer is gone already
        return None


def scope_address(address: Any) -> tuple[Any, Any] | None:
    """An address as an ASGI scope gives it: ``(host, port)``, ``(path, None)`` for a Unix socket."""
    if address is None:
        return None
    if isinstance(address, tuple):
        return (address[0], address[1])
    return (address, None)


def websocket_scope(request: Request, local_address: Any, prefix: str = "") -> dict[str, Any]:
    """``request`` as an ASGI websocket scope (a new, mutable dict): ``type``, ``asgi``,
    ``http_version``, ``scheme`` (``ws``/``wss``, as a trusted proxy forwarded it), ``path``
    (percent-decoded) and ``raw_path`` (as sent), ``root_path`` (the mount point,
    ``Request.root_path``), ``query_string``, ``headers`` (byte pairs, names lower-cased, in order),
    ``client``, ``server`` (``local_address``, a socket address, as ``(host, port)``) and
    ``subprotocols`` (offered). ``prefix``: a server's own root path, which a proxy took off the
    request (as uvicorn's ``root_path``): it starts ``root_path``, ``path`` and ``raw_path``."""
    raw_path, _, query = request.target.partition("#")[0].partition("?")
    return {
        "type": "websocket",
        "asgi": dict(ASGI_VERSION),
        "http_version": request.http_version,
        "scheme": request.scheme,
        "path": prefix + request.path,
        "raw_path": (prefix + raw_path).encode("latin-1"),
        "root_path": prefix + request.root_path,
        "query_string": query.encode("latin-1"),
        "headers": [(name.lower(), value) for name, value in request.headers.raw],
        "client": request.client,
        "server": scope_address(local_address),
        "subprotocols": list(request.subprotocols),
    }


class ScopeView:
    """``state``, ``scope``, ``local_address`` and ``remote_address`` (see the module)."""

    __slots__ = ("_addresses", "_state")  # (set on first use)
    _addresses: tuple[Any, Any]
    _state: State
    stream: trio.abc.Stream
    request: Request | None

    @property
    def state(self) -> State:
        """This connection's :class:`State`: set any attribute on it (``ws.state.user = user``) to
        keep it with the connection, from middleware or a dependency to the handler."""
        try:
            return self._state
        except AttributeError:
            state = self._state = State()
            return state

    def _socket_addresses(self) -> tuple[Any, Any] | None:
        try:
            return self._addresses
        except AttributeError:
            addresses = socket_addresses(self.stream)
            if addresses is not None:  # (kept: the socket may be closed when asked again)
                self._addresses = addresses
            return addresses

    @property
    def local_address(self) -> Any:
        """This end's socket address, as ``socket.getsockname()`` gives it (``(host, port)`` for
        IPv4, ``(host, port, flowinfo, scope_id)`` for IPv6), under TLS too; ``None`` for a stream
        without a socket (the test client's memory streams). Read once, while the socket is open,
        it is kept."""
        addresses = self._socket_addresses()
        return None if addresses is None else addresses[0]

    @property
    def remote_address(self) -> Any:
        """The peer's socket address, as ``socket.getpeername()`` gives it (see
        :attr:`local_address`): the TCP peer itself — a proxy's address behind one, where
        ``ws.client`` names the client the trusted proxy forwarded for."""
        addresses = self._socket_addresses()
        return None if addresses is None else addresses[1]

    @property
    def scope(self) -> Mapping[str, Any]:
        """The connection as an ASGI websocket scope (read-only), for middleware written for one:
        ``type`` (``"websocket"``), ``asgi``, ``http_version``, ``scheme`` (``"ws"``/``"wss"``),
        ``path`` (percent-decoded), ``raw_path`` and ``query_string`` (bytes, as sent),
        ``root_path`` (the mount point: ``Request.root_path``), ``headers`` (``(name, value)``
        byte pairs, names lower-cased, in order),
        ``client`` (``ws.client``: ``(host, port)`` or ``None``), ``server`` (this end's
        ``(host, port)`` or ``None``), ``subprotocols`` (offered) and ``path_params``.
        ``RuntimeError`` for a connection without a request."""
        request = self.request
        if request is None:
            raise RuntimeError("this WebSocket has no request")
        scope = websocket_scope(request, self.local_address)
        scope["path_params"] = dict(request.path_params)
        return MappingProxyType(scope)
