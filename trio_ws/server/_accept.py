"""Accepting connections on a listener, with a short path for plain TCP.

``trio.SocketListener.accept`` takes one connection per call and yields to the scheduler after
each one that succeeds: a task step per connection besides the wait. On POSIX a plain TCP listener
(or Unix socket) listener is read here the way the reader reads a socket: every connection
waiting is accepted at once (up to :data:`BATCH`), then the loop waits for the listening socket to
be readable again. Any other listener (TLS, a user's own, in-memory ones in tests) goes through
its ``accept``.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import trio

__all__ = ["accept_forever"]

logger = logging.getLogger("trio_ws")

#: A full process (files), or a kernel short of memory: retried after a pause, not the end.
RETRY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
RETRY_DELAY = 0.1
#: An error of one incoming connection, not of the listener (accept(2)): skip it, go on.
SKIP_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNABORTED", "EPROTO", "EPERM", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN", "ENONET",
        "EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH", "ECONNRESET", "ETIMEDOUT",
    )
    if hasattr(errno, name)
)  # fmt: skip
#: At most this many connections accepted (or tried) in one go before the loop lets others run.
BATCH = 64
_DIRECT = os.name == "posix"


async def accept_forever(listener: trio.abc.Listener[Any], serve: Callable[[trio.abc.Stream], None]) -> None:
    """Accept connections and hand each to ``serve`` (which starts a task for it), until the
    listener is closed. A full process or kernel (``EMFILE``, ``ENOMEM``, ...) is logged and
    retried after a pause; an error of one incoming connection (reset, aborted, refused by a
    firewall rule) skips it; any other error of the listener is raised."""
    if isinstance(listener, trio.SocketListener) and type(listener) is trio.SocketListener and _DIRECT:
        direct = listener.socket.type == socket.SOCK_STREAM
        if direct and await _accept_direct(listener.socket, serve):
            return
    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:
            await _pause(exc)
            continue
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return
        serve(stream)


async def _pause(exc: OSError) -> None:
    if exc.errno not in RETRY_ERRNOS:
        raise exc
    logger.error("accept failed (%s); retrying in %ss", exc, RETRY_DELAY)
    await trio.sleep(RETRY_DELAY)


async def _accept_direct(listening: trio.socket.SocketType, serve: Callable[[trio.abc.Stream], None]) -> bool:
    """The short path; ``False`` if it cannot be taken (then the listener's ``accept``)."""
    # A second descriptor of the listening socket to accept on (what trio's socket object wraps
    # is its own). It keeps the socket listening after trio's is closed, so the loop checks.
    try:
        fd = os.dup(listening.fileno())
    except OSError:
        return listening.fileno() < 0  # closed: done; else (a full process, say) the long path
    try:
        raw = socket.socket(fileno=fd)
    except OSError:
        os.close(fd)
        return False
    with raw:
        raw.setblocking(False)
        while listening.fileno() >= 0:
            tried = 0
            try:
                while tried < BATCH:
                    tried += 1
                    try:
                        conn, _ = raw.accept()
                    except OSError as exc:
                        if exc.errno not in SKIP_ERRNOS:
                            raise
                        continue
                    try:
                        serve(trio.SocketStream(trio.socket.from_stdlib_socket(conn)))
                    except BaseException:
                        conn.close()
                        raise
            except BlockingIOError:
                pass
            except OSError as exc:
                await _pause(exc)
                continue
            if listening.fileno() < 0:
                break
            try:
                if tried == BATCH:
                    await trio.lowlevel.checkpoint()
                else:
                    await trio.lowlevel.wait_readable(listening)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                break
    return True
