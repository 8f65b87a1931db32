"""A Redis Cluster of the tests' own: six redis-server processes on free ports (three primaries, one
replica each), joined with ``redis-cli --cluster create``; the ``redis_cluster`` fixture of
``conftest.py`` starts one for a test module and heals it (restarts killed nodes) before each test.

The nodes are other processes with no event to wait on, so readiness is polled: a loop of
``CLUSTER INFO`` (or ``CLUSTER NODES``) with ``trio.sleep`` as its poll interval, bounded by
``fail_after``. The processes are plain ``subprocess.Popen`` objects, so they outlive the trio run
that started them (each test runs its own); their logs go to files in the cluster's directory.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import trio

#: The cluster-node-timeout of the tests' cluster (ms): a node not answering for this long is
#: suspected, then failed over once the other primaries agree.
NODE_TIMEOUT_MS = 1000
POLL = 0.05  # the poll interval of the readiness loops (other processes' state)


def free_cluster_port() -> int:
    """A port with its cluster bus port (``port + 10000``) free too."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus, contextlib.suppress(OSError):
            bus.bind(("127.0.0.1", port + 10000))
            return port


def key_slot(key: str) -> int:
    """The cluster slot of ``key`` (CRC16/XMODEM of its hash tag, or of the key, modulo 16384)."""
    data = key.encode()
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc % 16384


class RedisClusterNodes:
    """Six redis-server processes in cluster mode; ``ports[i]`` is node ``i``'s port."""

    def __init__(self, count: int = 6) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="trio_ws-cluster-"))
        self.ports = [free_cluster_port() for _ in range(count)]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        assert binary, "redis-server is not installed (sh tests/install-system-packages.sh)"
        assert cli, "redis-cli is not installed (it comes with redis-server)"
        self.binary, self.cli_binary = binary, cli

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    @property
    def startup_nodes(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.ports]

    def launch(self, port: int) -> None:
        """Start (or restart, with its nodes.conf: it rejoins the cluster) the node on ``port``."""
        log = (self.directory / f"{port}.log").open("ab")
        self.processes[port] = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--repl-diskless-sync-delay",  # a replica's first sync starts at once, not after 5 s
                "0",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    async def start(self) -> None:
        for port in self.ports:
            self.launch(port)
        with trio.fail_after(20):
            for port in self.ports:
                while (await self.cli(port, "ping", check=False)).strip() != "PONG":  # noqa: ASYNC110
                    await trio.sleep(POLL)
        await trio.run_process(
            [
                self.cli_binary,
                "--cluster",
                "create",
                *self.startup_nodes,
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            capture_stdout=True,
        )
        await self.wait_healthy()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)  # (a test may leave one frozen)
                process.kill()
            process.wait()
        self.processes.clear()
        shutil.rmtree(self.directory, ignore_errors=True)

    def kill(self, port: int) -> None:
        """``kill -9`` the node on ``port``."""
        process = self.processes[port]
        process.kill()
        process.wait()

    def freeze(self, port: int) -> None:
        self.processes[port].send_signal(signal.SIGSTOP)

    def thaw(self, port: int) -> None:
        self.processes[port].send_signal(signal.SIGCONT)

    async def cut_off(self, replica: int, primary: int) -> None:
        """Nothing the primary on ``primary`` takes from now on reaches its replica on ``replica``:
        the replica is frozen (``thaw`` it), and the primary drops its replication link meanwhile.
        (Freezing alone is not enough: what the primary sends waits in the frozen replica's socket,
        and the replica reads it once thawed, even after the primary died.)"""
        self.freeze(replica)
        assert (await self.cli(primary, "client", "kill", "type", "replica")).strip() == "1"

    def running(self, port: int) -> bool:
        return self.processes[port].poll() is None

    async def cli(self, port: int, *args: str, check: bool = True) -> str:
        result = await trio.run_process(
            [self.cli_binary, "-p", str(port), *args], capture_stdout=True, capture_stderr=True, check=check
        )
        return result.stdout.decode("utf-8", "replace")

    async def replicated(self, port: int, tag: str, timeout_ms: int = 2000) -> int:
        """How many replicas have everything the primary on ``port`` has taken so far: one write of
        this connection (a key with the hash tag ``tag``, so in a slot of that primary), then
        ``WAIT 1 timeout_ms`` on the same connection (WAIT waits for its own client's writes)."""
        commands = f"INCR {tag}:fence\nWAIT 1 {timeout_ms}\n".encode()
        result = await trio.run_process(
            [self.cli_binary, "-p", str(port)], stdin=commands, capture_stdout=True, capture_stderr=True
        )
        return int(result.stdout.split()[-1])

    async def info(self, port: int) -> dict[str, str]:
        lines = (await self.cli(port, "cluster", "info")).splitlines()
        return dict(line.split(":", 1) for line in lines if ":" in line)

    async def nodes(self, port: int) -> list[list[str]]:
        """``CLUSTER NODES`` as seen by the node on ``port``, one list of fields per node."""
        return [line.split() for line in (await self.cli(port, "cluster", "nodes")).splitlines() if line]

    async def primaries(self) -> dict[int, list[tuple[int, int]]]:
        """Each live primary's port and its slot ranges, as the first live node sees them."""
        seen = await self.nodes(next(p for p in self.ports if self.running(p)))
        out: dict[int, list[tuple[int, int]]] = {}
        for fields in seen:
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            ranges = [tuple(int(x) for x in part.split("-")) for part in fields[8:] if part[0].isdigit()]
            out[port] = [(r[0], r[-1]) for r in ranges]
        return out

    async def owner(self, slot: int) -> int:
        """The port of the primary serving ``slot``."""
        for port, ranges in (await self.primaries()).items():
            if any(low <= slot <= high for low, high in ranges):
                return port
        raise LookupError(f"no primary serves slot {slot}")

    async def replica_of(self, primary: int) -> int:
        seen = await self.nodes(primary)
        ids = {fields[0]: int(fields[1].split("@")[0].rsplit(":", 1)[1]) for fields in seen}
        own = next(fields[0] for fields in seen if "myself" in fields[2])
        found = [ids[fields[0]] for fields in seen if fields[3] == own]
        assert found, f"the primary on {primary} knows no replica of its own"
        return found[0]

    async def one_room_per_primary(self, stem: str) -> dict[int, str]:
        """A room named ``<stem><n>`` (channel ``{trio_ws:<room>}``) on each primary: port -> room."""
        owners = await self.primaries()
        rooms: dict[int, str] = {}
        n = 0
        while len(rooms) < len(owners):
            room = f"{stem}{n}"
            slot = key_slot("{trio_ws:" + room + "}")
            port = next(p for p, ranges in owners.items() if any(lo <= slot <= hi for lo, hi in ranges))
            rooms.setdefault(port, room)
            n += 1
        return rooms

    async def room_on(self, port: int, stem: str) -> str:
        """A room named ``<stem><n>`` whose channel is on the primary on ``port``."""
        owned = (await self.primaries())[port]
        return next(
            room
            for room in (f"{stem}{n}" for n in range(10_000))
            if any(lo <= key_slot("{trio_ws:" + room + "}") <= hi for lo, hi in owned)
        )

    async def shard_channels(self, port: int) -> set[str]:
        """The shard channels someone is subscribed to on the node on ``port``."""
        return set((await self.cli(port, "pubsub", "shardchannels")).split())

    async def calls(self, port: int, command: str) -> int:
        """How many times ``command`` ran on the node on ``port`` since it started."""
        found = re.search(rf"cmdstat_{command}:calls=(\d+)", await self.cli(port, "info", "commandstats"))
        return int(found.group(1)) if found else 0

    async def node_id(self, port: int) -> str:
        return (await self.cli(port, "cluster", "myid")).strip()

    async def move_slot(self, slot: int, target: int) -> None:
        """Move ``slot`` and its keys to the primary on ``target``, as resharding does: importing,
        migrating, the keys (MIGRATE), then the new owner announced to both ends."""
        source = await self.owner(slot)
        source_id, target_id = await self.node_id(source), await self.node_id(target)
        await self.cli(target, "cluster", "setslot", str(slot), "importing", source_id)
        await self.cli(source, "cluster", "setslot", str(slot), "migrating", target_id)
        while keys := (await self.cli(source, "cluster", "getkeysinslot", str(slot), "100")).split():
            await self.cli(source, "migrate", "127.0.0.1", str(target), "", "0", "5000", "keys", *keys)
        await self.cli(target, "cluster", "setslot", str(slot), "node", target_id)
        await self.cli(source, "cluster", "setslot", str(slot), "node", target_id)

    async def set_everywhere(self, name: str, value: str) -> None:
        """CONFIG SET on every running node."""
        for port in self.ports:
            if self.running(port):
                await self.cli(port, "config", "set", name, value)

    async def wait_healthy(self) -> None:
        """Until every node runs, says ``cluster_state:ok`` and knows six nodes, none failed, every
        primary knows its replica, and every replica takes its primary's writes (else it could not
        be promoted with them). The last is a write and a WAIT on each primary: a replica that was
        just synchronised again says its link is up, but its primary starts streaming its writes to
        it only at its first acknowledgement, up to a second later."""
        with trio.fail_after(30):
            for port in self.ports:
                if not self.running(port):
                    self.launch(port)
            while not await self._healthy():  # noqa: ASYNC110 - other processes' state
                await trio.sleep(POLL)
            for port in await self.primaries():
                tag = "{trio_ws:" + await self.room_on(port, "fence") + "}"
                while await self.replicated(port, tag, timeout_ms=200) != 1:  # WAIT: the poll's pause
                    pass

    async def _healthy(self) -> bool:
        for port in self.ports:
            try:
                info = await self.info(port)
                seen = await self.nodes(port)
            except subprocess.CalledProcessError:
                return False  # not listening yet
            if info.get("cluster_state") != "ok" or len(seen) != len(self.ports):
                return False
            if any("fail" in fields[2] or fields[7] != "connected" for fields in seen):
                return False
            replication = await self.cli(port, "info", "replication")
            if "role:slave" in replication and "master_link_status:up" not in replication:
                return False
        masters = await self.primaries()
        if len(masters) != len(self.ports) // 2 or not all(masters.values()):
            return False
        for port in masters:  # each primary's own view names its replica
            seen = await self.nodes(port)
            own = next(fields[0] for fields in seen if "myself" in fields[2])
            if not any(fields[3] == own for fields in seen):
                return False
        return True

    async def wait_promoted(self, replica: int) -> None:
        """Until the node on ``replica`` is a primary that serves slots, and the cluster is ok."""
        with trio.fail_after(30):
            while True:
                info = await self.info(replica)
                if info.get("cluster_state") == "ok" and (await self.primaries()).get(replica):
                    return
                await trio.sleep(POLL)
