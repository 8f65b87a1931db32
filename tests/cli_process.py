"""Running the command line as a user runs it, in a subprocess: ``python -m trio_ws ...``."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "tests" / "apps"
SERVING = re.compile(rb"serving \S+ on (wss?|https?)://(\[[^\]]+\]|[^:\s]+):(\d+)[^(\n]* \(pid (\d+)\)")
SERVING_ANYWHERE = re.compile(rb"serving \S+ on (\S+?),? .*?\(pid (\d+)\)")
HANDSHAKE = (
    b"GET /pid HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a command-line subprocess: this checkout's trio_ws first, no stray
    ``TRIO_WS_*`` variable."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("TRIO_WS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.update(extra or {})
    return env


class Server:
    """A running command line and what it printed on stderr so far."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.output = b""
        self.ports: list[int] = []
        self.pids: list[int] = []

    @property
    def log(self) -> str:
        return self.output.decode(errors="replace")

    async def read_until(self, pattern: bytes | re.Pattern[bytes], count: int = 1) -> None:
        """Read the server's stderr until ``pattern`` appeared ``count`` times (or it exited)."""
        assert self.process.stderr is not None
        with trio.fail_after(30):
            while len(re.findall(pattern, self.output)) < count:
                chunk = await self.process.stderr.receive_some()
                if not chunk:
                    break
                self.output += chunk
        for m in SERVING_ANYWHERE.finditer(self.output):
            if int(m[2]) not in self.pids:
                self.pids.append(int(m[2]))
                tcp = SERVING.match(m[0])
                self.ports.append(int(tcp[3]) if tcp else 0)

    async def read_all(self) -> str:
        """Everything it prints until it exits."""
        await self.read_until(b"(?!)")  # (a pattern that never matches: read to the end)
        return self.log


@asynccontextmanager
async def run_cli(
    *args: str,
    serving: int = 1,
    env: Mapping[str, str] | None = None,
    cwd: Path = APPS,
    pass_fds: Sequence[int] = (),
) -> AsyncIterator[Server]:
    """Start the command line; wait for ``serving`` "serving ..." lines; stop it on the way out
    if it still runs (SIGTERM, which a supervisor hands on to its workers; then SIGKILL)."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_ws", *args],
        cwd=cwd,
        stderr=subprocess.PIPE,
        env=cli_env(env),
        pass_fds=tuple(pass_fds),
    )
    server = Server(process)
    try:
        if serving:
            await server.read_until(SERVING_ANYWHERE, serving)
            assert len(server.pids) >= serving, server.log
        yield server
    finally:
        if process.returncode is None:
            process.terminate()
            with trio.move_on_after(10):
                await process.wait()
            process.kill()
            await process.wait()
        assert process.stderr is not None
        await process.stderr.aclose()


async def run_cli_once(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path = APPS
) -> subprocess.CompletedProcess[bytes]:
    """Run the command line to its end (for errors, --help, --version)."""
    with trio.fail_after(30):
        return await trio.run_process(
            [sys.executable, "-m", "trio_ws", *args],
            cwd=cwd,
            stdin=b"",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=cli_env(env),
        )


class RawClient:
    """A WebSocket client that does nothing on its own (no pongs, no close replies): reads frames."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = b""

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        client = cls(await trio.open_tcp_stream("127.0.0.1", port))
        await client.stream.send_all(HANDSHAKE)
        head = await client.read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return client

    async def _fill(self, n: int) -> None:
        while len(self.buffer) < n:
            chunk = await self.stream.receive_some()
            if not chunk:
                raise EOFError
            self.buffer += chunk

    async def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            await self._fill(len(self.buffer) + 1)
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    async def frame(self) -> tuple[int, bytes]:
        """The next frame from the server: ``(opcode, payload)``."""
        await self._fill(2)
        length, start = self.buffer[1] & 0x7F, 2
        if length == 126:
            await self._fill(4)
            length, start = struct.unpack("!H", self.buffer[2:4])[0], 4
        elif length == 127:
            await self._fill(10)
            length, start = struct.unpack("!Q", self.buffer[2:10])[0], 10
        await self._fill(start + length)
        opcode, payload = self.buffer[0] & 0x0F, self.buffer[start : start + length]
        self.buffer = self.buffer[start + length :]
        return opcode, payload
