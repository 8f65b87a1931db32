"""The echo server of ``bench/servers.py`` (trio_ws, compression and keepalive off), run as a script
by ``python -m bench.bench_budget``: ``python bench/_budget_server.py PORT [--steps] [--once]``.

Run by path (not ``-m``), so that ``trio_ws`` comes from ``PYTHONPATH``: the budget of another
checkout is measured with this same script. ``--steps`` counts the task steps of every task (a trio
``Instrument``) and prints the counts, as ``STEPS name=count ...``, each time the process gets
``SIGUSR1``. ``--once`` ends the server when its first connection is over (so that ``strace`` and
``valgrind`` see it exit by itself).
"""

from __future__ import annotations

import collections
import signal
import sys
from typing import Any

import trio

from trio_ws import WebSocket, WebSocketDisconnect, serve_websocket


class StepCounter(trio.abc.Instrument):
    """Task steps by task name (its last two dotted parts: class and method)."""

    def __init__(self) -> None:
        self.steps: collections.Counter[str] = collections.Counter()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps[".".join(task.name.split(".")[-2:]).replace(" ", "_")] += 1


async def main(port: int, steps: StepCounter | None, once: bool) -> None:
    async with trio.open_nursery() as nursery:

        async def echo(ws: WebSocket) -> None:
            await ws.accept()
            try:
                while True:
                    message = await ws.receive()
                    if isinstance(message, str):
                        await ws.send_text(message)
                    else:
                        await ws.send_bytes(message)
            except WebSocketDisconnect:
                if once:
                    nursery.cancel_scope.cancel()

        async def serve(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            await serve_websocket(
                echo, "127.0.0.1", port, max_message_size=2**24, ping_interval=None, task_status=task_status
            )

        await nursery.start(serve)
        if steps is not None:

            def report(*_: object) -> None:
                counts = " ".join(f"{name}={n}" for name, n in sorted(steps.steps.items()))
                print(f"STEPS {counts}", flush=True)

            signal.signal(signal.SIGUSR1, report)
        print("READY", flush=True)


if __name__ == "__main__":
    counter = StepCounter() if "--steps" in sys.argv else None
    trio.run(main, int(sys.argv[1]), counter, "--once" in sys.argv, instruments=[counter] if counter else [])
