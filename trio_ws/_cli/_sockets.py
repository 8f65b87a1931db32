"""Where the command line listens: TCP sockets (one per address of ``--host``, ``SO_REUSEPORT`` for
workers), a Unix socket (``--uds``) or inherited sockets (``--fd``), made before the trio loop
starts (the supervisor makes them once and hands them to its workers), and their trio listeners."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import socket
import ssl
import stat
from collections.abc import Iterator
from typing import Any, final

import trio

from ._values import CLIError

__all__ = [
    "UnixSocketListener",
    "UnixSocketStream",
    "check_port_free",
    "describe",
    "listening_sockets",
    "trio_listeners",
]


@contextlib.contextmanager
def listening_sockets(args: argparse.Namespace) -> Iterator[list[socket.socket]]:
    """The listening sockets ``args`` asks for (``--fd``, else ``--uds``, else ``--host``/``--port``),
    closed on exit; a Unix socket file made here is removed on exit too."""
    made: str | None = None
    if args.fd:
        sockets = [_inherited(fd) for fd in args.fd]
    elif args.uds:
        sockets, made = [_bind_unix(args.uds, args.backlog)], args.uds
    else:
        sockets = _bind_tcp(args.host, args.port, args.backlog, reuse_port=args.reuse_port)
    try:
        yield sockets
    finally:
        for sock in sockets:
            sock.close()
        if made is not None:
            with contextlib.suppress(OSError):
                os.unlink(made)


def check_port_free(host: str, port: int) -> None:
    """Fail early (:class:`CLIError`) if a process that does not share the port holds it."""
    for sock in _bind_tcp(host, port, 0, reuse_port=True, listen=False):
        sock.close()


def describe(sock: socket.socket, secure: bool, http: bool = False) -> str:
    """Where ``sock`` listens, as a URL: ``ws://127.0.0.1:8000``, ``ws://[::1]:8000``,
    ``ws+unix:/run/app.sock``; ``http://`` (``https``) when it serves HTTP too (``--asgi``)."""
    scheme = ("https" if secure else "http") if http else ("wss" if secure else "ws")
    address: Any = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        path = address.decode(errors="replace") if isinstance(address, bytes) else str(address)
        return f"{scheme}+unix:{path}"
    host = f"[{address[0]}]" if sock.family == socket.AF_INET6 else address[0]
    return f"{scheme}://{host}:{address[1]}"


def trio_listeners(
    sockets: list[socket.socket], context: ssl.SSLContext | None
) -> list[trio.abc.Listener[Any]]:
    """A trio listener for each socket, in TLS if ``context`` is given."""
    listeners: list[trio.abc.Listener[Any]] = []
    for sock in sockets:
        listener: trio.abc.Listener[Any] = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        if sock.family == socket.AF_UNIX:
            listener = UnixSocketListener(listener)
        if context is not None:
            listener = trio.SSLListener(listener, context, https_compatible=False)
        listeners.append(listener)
    return listeners


def _listen_error(exc: OSError, host: str, port: int) -> CLIError:
    if exc.errno == errno.EADDRINUSE:
        return CLIError(f"port {port} is in use on {host}", 1)
    if exc.errno == errno.EADDRNOTAVAIL:
        return CLIError(f"cannot listen on {host}: not an address of this machine", 1)
    if exc.errno == errno.EACCES:
        return CLIError(
            f"cannot listen on port {port}: permission denied (ports below 1024 need privileges)", 1
        )
    return CLIError(f"cannot listen on {host} port {port}: {exc.strerror or exc}", 1)


def _bind_tcp(
    host: str, port: int, backlog: int, *, reuse_port: bool, listen: bool = True
) -> list[socket.socket]:
    """A listening socket on each address ``host`` resolves to."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CLIError(f"cannot resolve --host {host!r}: {exc.strerror}") from None
    sockets: list[socket.socket] = []
    seen = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:  # the IPv4 address gets a socket of its own
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            if listen:
                sock.listen(backlog)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise _listen_error(exc, host, port) from None
    return sockets


def _bind_unix(path: str, backlog: int) -> socket.socket:
    """A listening Unix socket at ``path``; a stale socket file (nobody answers) is replaced."""
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise CLIError(f"--uds {path} exists and is not a socket", 1)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except (ConnectionRefusedError, FileNotFoundError):
                os.unlink(path)  # left over from a server that is gone
            except OSError as exc:
                raise CLIError(f"cannot use --uds {path}: {exc.strerror or exc}", 1) from None
            else:
                raise CLIError(f"--uds {path} is in use by another server", 1)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise CLIError(f"cannot listen on --uds {path}: {exc.strerror or exc}", 1) from None
    return sock


def _inherited(fd: int) -> socket.socket:
    """The listening socket open as ``fd``."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        if exc.errno == errno.EBADF:
            raise CLIError(f"--fd {fd}: no such open file descriptor") from None
        if exc.errno == errno.ENOTSOCK:
            raise CLIError(f"--fd {fd} is not a socket") from None
        raise CLIError(f"--fd {fd}: {exc.strerror or exc}") from None
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise CLIError(f"--fd {fd} is not a listening stream socket (bind() and listen() it first)")
    return sock


@final
class UnixSocketStream(trio.abc.HalfCloseableStream):
    """A connection accepted on a Unix socket. (Not a ``trio.SocketStream``: the server reads a
    ``(host, port)`` peer address from those; a Unix socket's peer has none.)"""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data``."""
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        """Wait until sending might not block."""
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        """Shut down the sending side."""
        await self.stream.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Receive some bytes (``b""`` at end of file)."""
        return await self.stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        """Close the connection."""
        await self.stream.aclose()


@final
class UnixSocketListener(trio.abc.Listener[UnixSocketStream]):
    """A listener on a Unix socket whose connections are :class:`UnixSocketStream`."""

    def __init__(self, listener: trio.abc.Listener[Any]) -> None:
        self.listener = listener

    async def accept(self) -> UnixSocketStream:
        """The next connection."""
        return UnixSocketStream(await self.listener.accept())

    async def aclose(self) -> None:
        """Stop listening."""
        await self.listener.aclose()
