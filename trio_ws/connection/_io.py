"""Reading and writing a connection's stream, with a short path for plain TCP.

``trio.SocketStream.receive_some`` and ``send_all`` wrap each socket call in a conflict detector and a
generator-based context manager that translates errors: about 3 µs per call on this project's
machine, as much as the system call; and a call that succeeds at once still yields to the scheduler
after it, a task step of its own. Each connection has one reader and one writer by construction, so
for a ``trio.SocketStream`` these functions call its socket directly and translate errors the same
way; any other stream (TLS, in-memory, a user's own) goes through its own methods.

On POSIX a plain TCP stream goes further (:func:`socket_of`): the reader reads with ``readv`` into a
buffer shared by every connection of the thread (:func:`read_buffer`), which the protocol parses
where it lies before the next read; the writer writes with ``writev``, header and payload as they
are, without joining them, and at once from the sending task when nothing is queued. Both wait
with ``trio.lowlevel.wait_readable`` / ``wait_writable`` only when the socket has nothing to give
or no room: a connection waiting for data holds one wait, not trio's whole socket-call machinery.

:func:`close_socket` closes a plain TCP stream without the scheduler round trip that
``SocketStream.aclose`` adds after closing the socket: for a task that has just checkpointed and is
about to end.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Callable, Sequence

import trio

from ._pacing import cancel_point_and_pace

__all__ = [
    "answer_and_linger",
    "close_socket",
    "consume",
    "drain",
    "read_buffer",
    "read_now",
    "receive_some",
    "send_all",
    "socket_of",
    "write_now",
]

_CLOSED_ERRNOS = frozenset({errno.EBADF, errno.ENOTSOCK})
#: Whether plain TCP streams are read and written with ``readv`` / ``writev`` (POSIX).
_DIRECT = hasattr(os, "readv") and hasattr(os, "writev")
#: At most this many buffers per ``writev`` (POSIX guarantees 16; Linux and macOS take 1024).
_IOV_MAX = 16
if _DIRECT:
    with contextlib.suppress(ValueError, OSError):
        _IOV_MAX = min(1024, max(16, os.sysconf("SC_IOV_MAX")))
#: The size of the shared read buffer: the most one read takes.
READ_SIZE = 65536 + 4096
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 65536


def _translate(exc: OSError) -> trio.ClosedResourceError | trio.BrokenResourceError:
    if exc.errno in _CLOSED_ERRNOS:
        return trio.ClosedResourceError("this socket was already closed")
    return trio.BrokenResourceError(f"socket connection broken: {exc}")


async def receive_some(stream: trio.abc.ReceiveStream, max_bytes: int) -> bytes | bytearray:
    """``stream.receive_some(max_bytes)``; on plain TCP without trio's socket-call machinery: always
    a cancel point, a schedule point when it waits for data or one is due (``_pacing``)."""
    if type(stream) is not trio.SocketStream:
        return await stream.receive_some(max_bytes)
    sock = stream.socket
    if not _DIRECT:
        try:
            return await sock.recv(max_bytes)
        except OSError as exc:
            raise _translate(exc) from exc
    await cancel_point_and_pace()
    buffer = read_buffer()
    with buffer[:max_bytes] as view:
        n = read_now(sock, view)
        while n is None:
            await trio.lowlevel.wait_readable(sock)
            n = read_now(sock, view)
        return bytes(view[:n])


async def send_all(stream: trio.abc.SendStream, data: bytes) -> None:
    """``stream.send_all(data)``; on plain TCP without trio's socket-call machinery: always a
    cancel point, a schedule point when it waits for room or one is due (``_pacing``)."""
    if type(stream) is not trio.SocketStream:
        await stream.send_all(data)
        return
    sock = stream.socket
    if _DIRECT:
        await cancel_point_and_pace()
        sent = write_now(sock, (data,))
        while sent < len(data):
            await trio.lowlevel.wait_writable(sock)
            with memoryview(data) as view, view[sent:] as rest:
                sent += write_now(sock, (rest,))
        return
    try:
        sent = await sock.send(data)
        if sent < len(data):
            with memoryview(data) as view:
                while sent < len(view):
                    with view[sent:] as rest:
                        sent += await sock.send(rest)
    except OSError as exc:
        raise _translate(exc) from exc


def close_socket(stream: trio.abc.AsyncResource) -> bool:
    """Close ``stream`` now if it is a ``trio.SocketStream`` (what its ``aclose`` does, without the
    checkpoint after) and return ``True``; ``False`` for any other stream: ``await stream.aclose()``."""
    if type(stream) is not trio.SocketStream:
        return False
    stream.socket.close()
    return True


# ------------------------------------------------------------ the POSIX short path


def socket_of(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    """The socket of a plain TCP stream on POSIX, for :func:`read_now` and :func:`write_now`;
    ``None`` for any other stream (use its methods)."""
    if _DIRECT and type(stream) is trio.SocketStream:
        return stream.socket
    return None


class _Shared(threading.local):
    view: memoryview | None = None


_shared = _Shared()


def read_buffer() -> memoryview:
    """The read buffer of this thread's connections (each thread runs its own trio loop), as a
    view: what a read puts there is parsed before the reader awaits anything, so one buffer
    serves them all."""
    view = _shared.view
    if view is None:
        view = _shared.view = memoryview(bytearray(READ_SIZE))
    return view


def read_now(sock: trio.socket.SocketType, buffer: memoryview) -> int | None:
    """Read what the socket has into ``buffer``, without waiting: how many bytes (``0``: end of
    stream), ``None`` if it has nothing now (then ``trio.lowlevel.wait_readable(sock)``). Raises
    ``trio.BrokenResourceError`` / ``ClosedResourceError``. (The exception of a socket with
    nothing to read is raised and caught in here, so that no long-lived coroutine frame gets a
    traceback, and with it a frame object of its own to keep.)"""
    try:
        return os.readv(sock.fileno(), (buffer,))
    except BlockingIOError:
        return None
    except OSError as exc:
        raise _translate(exc) from exc


def write_now(sock: trio.socket.SocketType, buffers: Sequence[bytes | memoryview]) -> int:
    """Write what the socket takes now of ``buffers``, in order, with one system call, without
    waiting: how many bytes (``0`` if it has no room). Raises ``trio.BrokenResourceError`` /
    ``ClosedResourceError``."""
    try:
        if len(buffers) == 1:
            return os.write(sock.fileno(), buffers[0])
        return os.writev(sock.fileno(), buffers if len(buffers) <= _IOV_MAX else buffers[:_IOV_MAX])
    except BlockingIOError:
        return 0
    except OSError as exc:
        raise _translate(exc) from exc


def consume(buffers: list[bytes | memoryview], n: int) -> None:
    """Drop the first ``n`` bytes of ``buffers`` (fewer than they hold): whole buffers, then the
    start of the next one (a view of its rest takes its place, no copy)."""
    i = 0
    while n >= len(buffers[i]):
        n -= len(buffers[i])
        i += 1
    del buffers[:i]
    if n:
        buffers[0] = memoryview(buffers[0])[n:]


async def drain(
    sock: trio.socket.SocketType, buffers: list[bytes | memoryview], written: Callable[[int], None]
) -> None:
    """Write ``buffers`` to the socket, waiting for room as needed: ``written(n)`` after each write
    takes its ``n`` bytes out of them. Raises ``trio.BrokenResourceError`` / ``ClosedResourceError``;
    cancelled while it waits for room, what is left stays in ``buffers``."""
    while buffers:
        n = write_now(sock, buffers)
        if n:
            written(n)
        else:
            await trio.lowlevel.wait_writable(sock)


async def answer_and_linger(stream: trio.abc.Stream, data: bytes, give_up_after: float) -> None:
    """Send ``data`` (an HTTP answer that ends the connection) if the peer is there, then close
    lingering: half-close, and read and drop what the peer still sends (at most 1 s and 64 KiB), so
    that closing with unread bytes does not reset the connection and lose the answer. The caller
    closes the stream after."""
    with (
        trio.move_on_after(give_up_after),
        contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
    ):
        await stream.send_all(data)
        if isinstance(stream, trio.abc.HalfCloseableStream):
            await stream.send_eof()
        with trio.move_on_after(_LINGER_SECONDS):
            drained = 0
            while drained < _LINGER_BYTES and (chunk := await stream.receive_some(16384)):
                drained += len(chunk)
