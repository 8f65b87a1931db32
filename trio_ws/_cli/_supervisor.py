"""The supervisor of ``--workers`` and ``--reload``: runs the worker processes, restarts one that
dies (logged, with a backoff, at most ``--max-worker-restarts`` times a minute, then it gives up),
restarts them all when a watched file changes, and hands SIGINT/SIGTERM on to every worker."""

from __future__ import annotations

import collections
import logging
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import final

import trio

__all__ = ["RESTART_WINDOW", "Supervisor", "exit_status"]

logger = logging.getLogger("trio_ws")

RESTART_WINDOW = 60.0  # seconds: --max-worker-restarts counts the restarts within this window
BACKOFF_FIRST = 0.25  # seconds before the first restart of a window; doubled for each next one
BACKOFF_MAX = 8.0

Watch = Callable[[Callable[[list[str]], None]], Awaitable[None]]
"""``await watch(on_change)``: call ``on_change(paths)`` for each batch of changed files."""


def exit_status(code: int) -> str:
    """A process's exit, in words: ``exited with status 3``, ``was killed by SIGKILL``."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with status {code}"


@final
class Supervisor:
    """Keeps ``count`` processes of ``command`` running until SIGINT or SIGTERM (then forwarded to
    each; a second signal kills them), in sessions of their own so that a terminal's Ctrl+C
    reaches only the supervisor. ``pass_fds``: the listening sockets they inherit. ``watch``: with
    ``--reload``, what tells of changed files; a worker that exits on its own then waits for the
    next change instead of being restarted."""

    def __init__(
        self,
        command: Sequence[str],
        count: int,
        *,
        env: dict[str, str],
        pass_fds: Sequence[int] = (),
        max_restarts: int = 10,
        watch: Watch | None = None,
    ) -> None:
        self.command = list(command)
        self.count = count
        self.env = env
        self.pass_fds = tuple(pass_fds)
        self.max_restarts = max_restarts
        self.watch = watch
        #: The running workers, by slot (0 to count - 1).
        self.processes: dict[int, trio.Process] = {}
        self._signals = 0
        self._stopping = False
        self._stop_signal = signal.SIGTERM
        self._failed = False
        self._restarts: collections.deque[float] = collections.deque()
        self._reloading: set[int] = set()
        self._stopped: trio.Event | None = None
        self._changed: trio.Event | None = None

    async def run(self) -> int:
        """Supervise until stopped; the exit status: 0 after a signal, 1 after giving up or after
        a second signal."""
        self._stopped, self._changed = trio.Event(), trio.Event()
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_signals, signals)
                if self.watch is not None:
                    nursery.start_soon(self.watch, self.reload)
                async with trio.open_nursery() as workers:
                    for slot in range(self.count):
                        workers.start_soon(self._keep_running, slot)
                nursery.cancel_scope.cancel()
        return 1 if self._failed or self._signals > 1 else 0

    def reload(self, paths: list[str]) -> None:
        """Files changed: restart every worker (each shuts down gracefully first)."""
        if self._stopping:
            return
        shown = ", ".join(os.path.relpath(path) for path in paths[:3]) + (" ..." if len(paths) > 3 else "")
        logger.warning("changed: %s; reloading", shown)
        for slot, process in self.processes.items():
            self._reloading.add(slot)
            process.send_signal(signal.SIGTERM)
        self._wake()

    def _wake(self) -> None:
        """Wake the slots waiting for a change."""
        assert self._changed is not None
        self._changed.set()
        self._changed = trio.Event()

    def _stop(self, signum: int) -> None:
        self._stopping = True
        self._stop_signal = signal.Signals(signum)
        assert self._stopped is not None
        self._stopped.set()
        self._wake()
        for process in list(self.processes.values()):
            process.send_signal(signum)

    async def _watch_signals(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            self._signals += 1
            name = signal.Signals(signum).name
            if self._signals == 1:
                logger.info("%s: stopping the workers (again to kill them)", name)
                self._stop(signum)
            else:
                logger.warning("%s again: killing the workers", name)
                for process in list(self.processes.values()):
                    process.kill()

    def _next_delay(self) -> float | None:
        """The backoff before one more restart, or ``None`` if there were too many lately."""
        now = trio.current_time()
        while self._restarts and self._restarts[0] <= now - RESTART_WINDOW:
            self._restarts.popleft()
        if len(self._restarts) >= self.max_restarts:
            return None
        self._restarts.append(now)
        return min(BACKOFF_FIRST * 2.0 ** (len(self._restarts) - 1), BACKOFF_MAX)

    async def _keep_running(self, slot: int) -> None:
        """Run the worker of ``slot``, again and again, until the supervisor stops."""
        while not self._stopping:
            process = await trio.lowlevel.open_process(
                self.command, start_new_session=True, env=self.env, pass_fds=self.pass_fds
            )
            self.processes[slot] = process
            if self._stopping:  # a signal came while it started
                process.send_signal(self._stop_signal)
            try:
                code = await process.wait()
            finally:
                del self.processes[slot]
                if process.returncode is None:  # (cancelled: leave no worker behind)
                    process.kill()
            if self._stopping:
                return
            if slot in self._reloading:
                self._reloading.discard(slot)
                continue
            worker = f"worker {slot + 1} (pid {process.pid}) {exit_status(code)}"
            if self.watch is not None:
                logger.warning("%s; it restarts at the next change", worker)
                assert self._changed is not None
                await self._changed.wait()
                continue
            delay = self._next_delay()
            if delay is None:
                logger.error(
                    "%s; %d restarts within %ds (--max-worker-restarts): giving up",
                    worker,
                    len(self._restarts),
                    RESTART_WINDOW,
                )
                self._failed = True
                self._stop(signal.SIGTERM)
                return
            logger.warning("%s; restarting it in %.2fs", worker, delay)
            assert self._stopped is not None
            with trio.move_on_after(delay):
                await self._stopped.wait()
