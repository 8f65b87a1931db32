"""The ASGI lifespan protocol: the application's startup before the server accepts a connection,
its shutdown after the last connection is closed, and the ``state`` it fills for every scope.

``lifespan="auto"`` (as uvicorn): an application that raises before it answers the startup does
not speak the protocol; that is logged at INFO and the server runs without it. ``"on"``: it is an
error. A ``lifespan.startup.failed`` is an error in both modes: :class:`LifespanFailed`.
"""

from __future__ import annotations

import math
from typing import Any, final

import trio

from ..connection import ASGI_VERSION
from ._asgi_types import ASGIApp, Message, logger

__all__ = ["LIFESPAN_MODES", "LifespanFailed", "LifespanRunner"]

#: The values of ``lifespan=``.
LIFESPAN_MODES = ("auto", "on", "off")


class LifespanFailed(RuntimeError):
    """The application's startup failed (``lifespan.startup.failed``, or with ``lifespan="on"``
    an exception): the server did not start. The message says why, in one line."""


@final
class LifespanRunner:
    """Runs ``app`` with a lifespan scope in a task of its own, from :meth:`startup` to
    :meth:`shutdown`. ``state`` is the scope's ``state``: what the application keeps there is
    copied into every connection's scope."""

    def __init__(self, app: ASGIApp, mode: str, state: dict[str, Any]) -> None:
        self.app = app
        self.mode = mode
        self.state = state
        self._started = trio.Event()
        self._stop = trio.Event()
        self._stopped = trio.Event()
        self._failure: str | None = None  # lifespan.startup.failed / shutdown.failed message
        self._error: BaseException | None = None  # what the application raised
        self._running = False  # the application answered the startup and waits for the shutdown
        self._receives = 0
        self._scope = trio.CancelScope(shield=True)  # (ended by shutdown(), not from outside)

    async def _receive(self) -> Message:
        self._receives += 1
        if self._receives == 1:
            await trio.lowlevel.checkpoint()
            return {"type": "lifespan.startup"}
        if self._receives == 2:
            await self._stop.wait()
            return {"type": "lifespan.shutdown"}
        await trio.sleep(math.inf)  # (nothing comes after the shutdown)
        raise AssertionError("unreachable")

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        expected = "lifespan.startup" if not self._started.is_set() else "lifespan.shutdown"
        if kind not in (f"{expected}.complete", f"{expected}.failed"):
            raise RuntimeError(f"expected {expected}.complete or {expected}.failed, got {kind!r}")
        if kind == f"{expected}.failed":
            self._failure = str(message.get("message") or "(no message)")
        if expected == "lifespan.startup":
            self._running = kind == "lifespan.startup.complete"
            self._started.set()
        else:
            self._stopped.set()
        await trio.lowlevel.checkpoint()

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": dict(ASGI_VERSION), "state": self.state}
        with self._scope:
            try:
                await self.app(scope, self._receive, self._send)
            except Exception as exc:  # (the application's: reported by startup() or shutdown())
                self._error = exc
                if self._running and not self._stop.is_set():
                    logger.error("the ASGI application's lifespan failed", exc_info=exc)
            finally:
                self._running = False
                self._started.set()
                self._stopped.set()

    @staticmethod
    def _said(report: str) -> str:
        """A failure's message in one line: the last line of a traceback (Starlette sends the
        whole traceback as the message; it is logged at DEBUG)."""
        lines = [line for line in report.strip().splitlines() if line.strip()]
        if len(lines) <= 1:
            return report.strip() or "(no message)"
        logger.debug("the ASGI application's report of its failure:\n%s", report)
        return lines[-1].strip()

    async def startup(self, nursery: trio.Nursery) -> None:
        """Start the application's lifespan in ``nursery`` and wait for its startup. Raises
        :class:`LifespanFailed` when it failed."""
        nursery.start_soon(self._run)
        await self._started.wait()
        if self._failure is not None:
            raise LifespanFailed(f"application startup failed: {self._said(self._failure)}")
        error = self._error
        if error is None:
            return
        if self.mode == "auto":
            logger.info(
                "the ASGI application does not support the lifespan protocol (%s: %s); going on without it",
                type(error).__name__,
                error,
            )
            return
        logger.error("the ASGI application's lifespan failed", exc_info=error)
        raise LifespanFailed(f"application startup failed: {type(error).__name__}: {error}")

    async def shutdown(self, grace: float) -> None:
        """Ask the application to shut down, and wait up to ``grace`` seconds (shielded); its
        failure is logged. Then its lifespan task is cancelled if it still runs."""
        with trio.CancelScope(shield=True):
            if self._running:
                self._stop.set()
                with trio.move_on_after(grace) as waited:
                    await self._stopped.wait()
                if waited.cancelled_caught:
                    logger.error("the ASGI application's shutdown took longer than %ss: cancelled", grace)
                elif self._failure is not None:
                    logger.error("application shutdown failed: %s", self._said(self._failure))
                elif self._error is not None:
                    logger.error("the ASGI application's shutdown failed", exc_info=self._error)
            self._scope.cancel()
