"""The command line's value types: each turns one string (from the command line or from a
``TRIO_WS_*`` environment variable) into a checked value, or says in one line what is wrong."""

from __future__ import annotations

import argparse
import ipaddress
import socket

__all__ = [
    "CLIError",
    "boolean",
    "byte_count",
    "file_descriptor",
    "forwarded_ips",
    "host_name",
    "import_string",
    "non_negative_int",
    "port_number",
    "positive_int",
    "root_path",
    "seconds",
    "trusted_networks",
]

_OFF = {"none", "off"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class CLIError(Exception):
    """A problem the user can fix: printed on one line without a traceback; ``code`` is the exit
    status (2 for a bad argument, 1 for what the system refused, such as a port in use)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _integer(text: str) -> int:
    try:
        return int(text.strip().replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def port_number(text: str) -> int:
    """A TCP port, 0 (any free port) to 65535."""
    port = _integer(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, not {port}")
    return port


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_int(text: str) -> int:
    """A whole number of at least 0."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def byte_count(text: str) -> int:
    """Bytes, as a whole number; ``0`` (or ``none``) means no limit."""
    if text.strip().lower() in _OFF:
        return 0
    return non_negative_int(text)


def seconds(text: str) -> float:
    """Seconds (``2.5``); ``0`` (or ``off``) turns the timer off where that is allowed."""
    if text.strip().lower() in _OFF:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):  # (also refuses nan)
        raise argparse.ArgumentTypeError(f"seconds are 0 or more, not {text!r}")
    return value


def file_descriptor(text: str) -> int:
    """An open file descriptor number (0 or more)."""
    return non_negative_int(text)


def boolean(text: str) -> bool:
    """``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off`` (an environment variable's
    switch)."""
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false (1/0, yes/no, on/off), not {text!r}")


def host_name(text: str) -> str:
    """A host name or address this machine can resolve: checked now, so that a typo is a one-line
    error rather than a failure to listen."""
    host = text.strip()
    if not host:
        raise argparse.ArgumentTypeError("the host is empty")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # "[::1]", as in a URL
    parts = host.split(".")
    if len(parts) == 4 and all(part.isdigit() for part in parts):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{host!r} is not an IPv4 address (each part is 0-255)"
            ) from None
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise argparse.ArgumentTypeError(f"cannot resolve {host!r}: {reason}") from None
    return host


def import_string(text: str) -> str:
    """``module:attribute`` (the attribute may be dotted)."""
    module, colon, attribute = text.partition(":")
    if not colon or not module or not attribute:
        raise argparse.ArgumentTypeError(f"expected module:attribute, got {text!r}")
    return text


def forwarded_ips(text: str) -> str:
    """A comma-separated list of addresses or networks (``127.0.0.1,10.0.0.0/8``), or ``*`` for
    every address: checked here, returned as given (see :func:`trusted_networks`)."""
    trusted_networks(text)
    return text


def trusted_networks(text: str) -> list[str]:
    """The entries of a :func:`forwarded_ips` list, ``*`` spelled as every IPv4 and IPv6 network."""
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    out: list[str] = []
    for entry in entries:
        if entry == "*":
            out += ["0.0.0.0/0", "::/0"]
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an IP address or network: {entry!r}") from None
        out.append(entry)
    return out


def root_path(text: str) -> str:
    """A path prefix (``/api``): starts with ``/``, no trailing ``/``; empty for none."""
    path = text.strip().rstrip("/")
    if path and not path.startswith("/"):
        raise argparse.ArgumentTypeError(f"a root path starts with '/': {text!r}")
    if "?" in path or "#" in path:
        raise argparse.ArgumentTypeError(f"a root path is a path, without '?' or '#': {text!r}")
    return path
