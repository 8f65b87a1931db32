"""``--reload``: watch directories for changed files with ``watchfiles`` (an optional extra,
``pip install 'trio-ws[reload]'``), in a thread, and tell the supervisor."""

from __future__ import annotations

import fnmatch
import importlib
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import trio

from ._values import CLIError

__all__ = ["ReloadFilter", "FileWatcher", "require_watchfiles"]

DEFAULT_INCLUDE = ("*.py",)
DEFAULT_EXCLUDE = (".*", "*~", "*.py[cod]")


def require_watchfiles() -> Any:
    """The ``watchfiles`` module, or a :class:`CLIError` saying how to install it."""
    try:
        return importlib.import_module("watchfiles")
    except ImportError:
        raise CLIError("--reload needs watchfiles: pip install 'trio-ws[reload]'") from None


class ReloadFilter:
    """Which changed paths count: not in the directories watchfiles always skips (``.git``,
    ``__pycache__``...), a name that matches an ``include`` pattern and no ``exclude`` pattern."""

    def __init__(self, include: Sequence[str], exclude: Sequence[str]) -> None:
        self.default = require_watchfiles().DefaultFilter()
        self.include = tuple(include)
        self.exclude = tuple(exclude)

    def __call__(self, change: Any, path: str) -> bool:
        """Whether a change of ``path`` triggers a reload."""
        if not self.default(change, path):
            return False
        name = os.path.basename(path)
        included = any(fnmatch.fnmatch(name, pattern) for pattern in self.include)
        return included and not any(fnmatch.fnmatch(name, pattern) for pattern in self.exclude)


class FileWatcher:
    """Watches ``directories``; :meth:`run` calls ``on_change(paths)`` in trio for each batch of
    changed files until cancelled."""

    def __init__(self, directories: Sequence[str], include: Sequence[str], exclude: Sequence[str]) -> None:
        for directory in directories:
            if not os.path.isdir(directory):
                raise CLIError(f"--reload-dir {directory} is not a directory")
        self.watchfiles = require_watchfiles()
        self.directories = [os.path.abspath(directory) for directory in directories]
        self.filter = ReloadFilter(include or DEFAULT_INCLUDE, exclude or DEFAULT_EXCLUDE)

    async def run(self, on_change: Callable[[list[str]], None]) -> None:
        """Watch until cancelled (the watching thread ends within 50 ms after)."""
        stop = threading.Event()
        token = trio.lowlevel.current_trio_token()

        def watch() -> None:
            batches = self.watchfiles.watch(
                *self.directories, watch_filter=self.filter, stop_event=stop, debounce=1600, step=50
            )
            for batch in batches:
                paths = sorted({path for _, path in batch})
                try:
                    trio.from_thread.run_sync(on_change, paths, trio_token=token)
                except trio.RunFinishedError:
                    return

        try:
            await trio.to_thread.run_sync(watch, abandon_on_cancel=True)
        finally:
            stop.set()
