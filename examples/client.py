"""A command-line client: send each argument (or each line of standard input) and print the answer.

    python examples/client.py ws://127.0.0.1:8000/ hello world
    echo '{"id": 1, "method": "balance"}' | python examples/client.py ws://127.0.0.1:8000/accounts/7

Exit status: 0 after a normal close, 1 when the server refuses the handshake or closes with an error.
"""

from __future__ import annotations

import argparse
import sys

import trio

from trio_ws import HandshakeRejected, WebSocketDisconnect, open_websocket_url


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
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url", help="ws:// or wss:// URL")
    parser.add_argument("messages", nargs="*", help="messages to send (default: lines of standard input)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each answer")
    args = parser.parse_args()
    lines = args.messages or [line.rstrip("\n") for line in sys.stdin]
    sys.exit(trio.run(main, args.url, lines, args.timeout))
