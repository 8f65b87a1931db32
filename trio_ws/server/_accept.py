"""Accepting connections on a listener, with a short path for plain TCP.

``trio.SocketListener.accept`` takes one connection per call and yields to the scheduler after
each one that succeeds: a task step per connection besides the wait. On POSIX a plain TCP listener
is read here the way the reader reads a socket: every connection waiting is accepted at once (up
to :data:`BATCH`), then the loop waits for the listening socket to be readable again. Any other
listener (TLS, Unix sockets through a user's own, in-memory ones in tests) goes through its
``accept``.
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
#: At most this many connections accepted in one go before the loop lets others run.
BATCH = 64
_DIRECT = os.name == "posix"


async def accept_forever(listener: trio.abc.Listener[Any], serve: Callable[[trio.abc.Stream], None]) -> None:
    """Accept connections and hand each to ``serve`` (which starts a task for it), until the
    listener is closed. A full process or kernel (``EMFILE``, ``ENOMEM``, ...) is logged and
    retried after a pause; any other error of the listener is raised."""
    if _DIRECT and type(listener) is trio.SocketListener and listener.socket.type == socket.SOCK_STREAM:
        await _accept_tcp(listener.socket, serve)
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


async def _accept_tcp(listening: trio.socket.SocketType, serve: Callable[[trio.abc.Stream], None]) -> None:
    # A second descriptor of the listening socket to accept on (what trio's socket object wraps
    # is its own); closing the listener still wakes the wait below, which is on trio's socket.
    try:
        raw = socket.socket(fileno=os.dup(listening.fileno()))
    except OSError:  # (already closed)
        return
    with raw:
        raw.setblocking(False)
        while True:
            accepted = 0
            try:
                while accepted < BATCH:
                    conn, _ = raw.accept()
                    accepted += 1
                    serve(trio.SocketStream(trio.socket.from_stdlib_socket(conn)))
            except BlockingIOError:
                pass
            except OSError as exc:
                if exc.errno in (errno.EBADF, errno.EINVAL):  # the listener was closed meanwhile
                    return
                if exc.errno not in (errno.ECONNABORTED, errno.EPROTO):  # (a client gone: next)
                    await _pause(exc)
                continue
            if listening.fileno() < 0:  # the listener was closed while we accepted
                return
            try:
                if accepted == BATCH:
                    await trio.lowlevel.checkpoint()
                else:
                    await trio.lowlevel.wait_readable(listening)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return
