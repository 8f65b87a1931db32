"""A redis-server of the test's own on a free port, for the tests of rooms across processes (the
``redis`` fixture of ``conftest.py`` runs one for a test)."""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
from typing import Any

import trio


class Redis:
    def __init__(self, port: int, nursery: trio.Nursery) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.nursery = nursery
        self.process: trio.Process | None = None

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (sh tests/install-system-packages.sh)"
        process = await trio.lowlevel.open_process(
            [binary, "--port", str(self.port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
            stdout=subprocess.PIPE,
        )
        assert process.stdout is not None
        seen = b""
        with trio.fail_after(10):
            while b"Ready to accept connections" not in seen:
                chunk = await process.stdout.receive_some()
                assert chunk, seen.decode()
                seen += chunk
        self.nursery.start_soon(self._drain, process.stdout)  # its log goes nowhere, never blocks it
        self.process = process

    @staticmethod
    async def _drain(stream: Any) -> None:
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            while await stream.receive_some():
                pass

    async def stop(self) -> None:
        assert self.process is not None
        self.process.kill()
        await self.process.wait()
        self.process = None

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    async def cli(self, *args: str) -> str:
        cli = shutil.which("redis-cli")
        assert cli, "redis-cli is not installed (it comes with redis-server)"
        result = await trio.run_process([cli, "-p", str(self.port), *args], capture_stdout=True)
        return result.stdout.decode("utf-8", "replace")

    async def subscribers(self) -> int:
        """Connections subscribed to at least one channel (every hub's listener is)."""
        lines = (await self.cli("client", "list")).splitlines()
        return sum(bool(re.search(r"\bsub=[1-9]", line)) for line in lines)

    async def channels(self) -> set[str]:
        """The rooms' channels someone is subscribed to (not the listeners' own control channel)."""
        return {line for line in (await self.cli("pubsub", "channels")).splitlines() if "\x00" not in line}

    async def calls(self, command: str) -> int:
        """How many times ``command`` ran since the server started."""
        found = re.search(rf"cmdstat_{command}:calls=(\d+)", await self.cli("info", "commandstats"))
        return int(found.group(1)) if found else 0
