"""A command-line client: send each argument (or each line of standard input) and print the answer.

    python examples/client.py ws://127.0.0.1:8000/ hello world
    echo '{"id": 1, "method": "balance"}' | python examples/client.py ws://127.0.0.1:8000/accounts/7

Exit status: 0 after a normal close, 1 when the server cannot be reached, refuses the handshake or
closes with an error (each said in one line on stderr), 130 on Ctrl+C.
"""

from __future__ import annotations

import argparse
import os
import sys

import trio

from trio_ws import HandshakeRejected, WebSocketDisconnect, open_websocket_url

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup


def reason(exc: OSError) -> str:
    """Why a connection failed, in words: what the first address tried said."""
    while exc.strerror is None:  # trio's "all attempts failed", from a group of attempts
        cause = exc.__cause__
        if isinstance(cause, BaseExceptionGroup):
            cause = cause.exceptions[0]
        if not isinstance(cause, OSError):
            break
        exc = cause
    if exc.errno is not None and exc.errno > 0:  # (a name lookup's errno is negative)
        return os.strerror(exc.errno)  # "Connection refused", without trio's "Error connecting to"
    return exc.strerror or str(exc)


def interrupted(exc: BaseException) -> bool:
    """Ctrl+C: a KeyboardInterrupt, alone or in the groups trio's nurseries wrap it in."""
    if isinstance(exc, BaseExceptionGroup):
        return all(interrupted(e) for e in exc.exceptions)
    return isinstance(exc, KeyboardInterrupt)


async def main(url: str, messages: list[str], wait: float) -> int:
    try:
        async with open_websocket_url(url) as ws:
            for message in messages:
                await ws.send_text(message)
                with trio.fail_after(wait):
                    print(await ws.receive(), flush=True)
    except HandshakeRejected as exc:
        print(f"refused: {exc.status} {exc.body.decode(errors='replace').strip()}", file=sys.stderr)
        return 1
    except WebSocketDisconnect as exc:
        print(f"closed: {exc.code} {exc.reason}", file=sys.stderr)
        return 0 if exc.code in (1000, 1001) else 1
    except trio.TooSlowError:
        print(f"no answer within {wait} s", file=sys.stderr)
        return 1
    except OSError as exc:  # refused, unknown host, TLS: before any message
        print(f"cannot connect to {url}: {reason(exc)}", file=sys.stderr)
        return 1
    except ValueError as exc:  # not a ws:// URL
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url", help="ws:// or wss:// URL")
    parser.add_argument("messages", nargs="*", help="messages to send (default: lines of standard input)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each answer")
    args = parser.parse_args()
    try:
        lines = args.messages or [line.rstrip("\n") for line in sys.stdin]
        status = trio.run(main, args.url, lines, args.timeout)
    except BaseException as exc:
        if not interrupted(exc):
            raise
        print("interrupted", file=sys.stderr)  # Ctrl+C: the connection was closed on the way out
        status = 130
    sys.exit(status)
