"""Rooms across processes through Redis: end-to-end latency and the highest publication rate held
with no loss, for three ways of carrying the rooms, in one run.

    python -m bench.bench_cluster                          # 10,000 subscribers, 100 rooms
    python -m bench.bench_cluster --subscribers 2000 --rates 100 200 400

Three worker processes (trio_ws servers, each with a ``Hub``) hold the subscribers: real WebSocket
connections from this process (raw non-blocking sockets), 100 per room. A room's subscribers are all
on one worker (room ``i`` on worker ``i % 3``, as a load balancer with room affinity would place
them), so each worker has a third of the rooms. A publisher process (its own hub, no members)
publishes small messages round-robin over the rooms at a fixed rate, each stamped with the
monotonic clock (shared by the processes on this machine); every delivery's latency is taken when
this process reads it. Each rate runs ``--seconds``; it is held if every subscriber got every
message of its room, the publisher kept the rate and the p99 latency stayed under ``--max-p99``
(a backlog that grows shows as latency long before anything is lost). The rates go up by a factor
of about 1.4 until one is not held. The CPU time Redis and the workers spent per 1,000 messages
(from /proc, schedstat) is taken over each round.

The three setups, with the same workers, hub and subscribers:

- ``pattern``: one pattern subscription per process (PSUBSCRIBE ``trio_ws:*``) and PUBLISH, as the
  Redis backend did before it subscribed per room (emulated here): every process receives every
  room's traffic and drops what it has no member for.
- ``rooms``: ``RedisBackend``, one redis-server, a SUBSCRIBE per room with local members.
- ``cluster``: ``RedisClusterBackend``, a Redis Cluster of three primaries (no replicas, so that it
  runs no more Redis work than the others), SSUBSCRIBE / SPUBLISH per room.

The hubs keep no presence (the pattern backend has none to keep). When ``taskset`` is there, Redis
and the workers share core 0; this process and the publisher, core 1.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from trio_ws.protocol import encode_frame

from .bench_echo import cpu_seconds, handshake

ROOT = Path(__file__).resolve().parent.parent
MODES = ["pattern", "rooms", "cluster"]
TITLES = {
    "pattern": "one pattern subscription, one Redis",
    "rooms": "per-room subscriptions, one Redis",
    "cluster": "Redis Cluster, 3 primaries",
}
WORKERS = 3
PIN = bool(shutil.which("taskset")) and (os.cpu_count() or 1) > 1
ROUNDS = itertools.count(1)  # each round's messages carry its number


class PatternBackend:
    """The broadcast backend as it was before rooms were subscribed one by one: every process
    PSUBSCRIBEs ``<prefix>*`` and receives the traffic of every room."""

    def __init__(self, url: str, prefix: str = "trio_ws:") -> None:
        import trio

        self.url, self.prefix = url, prefix
        self.ready = trio.Event()
        self.client: Any = None

    async def run(self, hub: Any, task_status: Any) -> None:
        import coredis

        from trio_ws.protocol import PreparedMessage

        task_status.started()
        client = coredis.Redis.from_url(self.url)
        async with (
            client,
            client.pubsub(patterns=[self.prefix + "*"], ignore_subscribe_messages=True) as pubsub,
        ):
            self.client = client
            self.ready.set()
            start = len(self.prefix)
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None and message["type"] == "pmessage":
                    room = bytes(message["channel"])[start:].decode()  # type: ignore[arg-type]
                    hub.deliver_local(room, PreparedMessage(bytes(message["data"]).decode()), remote=True)  # type: ignore[arg-type]

    async def publish(self, room: str, message: Any) -> None:
        await self.client.publish(self.prefix + room, message.payload)

    async def subscribe(self, rooms: Collection[str]) -> None:
        import trio

        await trio.lowlevel.checkpoint()

    def unsubscribe(self, rooms: Collection[str]) -> None:
        pass


class RoomsOnly:
    """A backend's rooms without its presence (which the hub would keep for every subscriber): the
    bench compares how rooms are carried, and the pattern backend keeps no presence."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    @property
    def ready(self) -> Any:
        return self.backend.ready

    async def run(self, hub: Any, task_status: Any) -> None:
        await self.backend.run(hub, task_status)

    async def publish(self, room: str, message: Any) -> None:
        await self.backend.publish(room, message)

    async def subscribe(self, rooms: Collection[str]) -> None:
        await self.backend.subscribe(rooms)

    def unsubscribe(self, rooms: Collection[str]) -> None:
        self.backend.unsubscribe(rooms)


def make_backend(mode: str, url: str) -> Any:
    from trio_ws import RedisBackend, RedisClusterBackend

    # A busy worker answers PINGs late on two cores: the health check must not refuse publications.
    options: dict[str, Any] = {"health_timeout": 10.0, "publish_timeout": 10.0, "subscribe_timeout": 60.0}
    if mode == "pattern":
        return PatternBackend(url)
    return RoomsOnly(RedisBackend(url, **options) if mode == "rooms" else RedisClusterBackend(url, **options))


async def serve(mode: str, port: int, url: str) -> None:
    """A worker: each connection sends its room's name, joins it, and is told "in"."""
    import trio

    from trio_ws import Hub, WebSocket, serve_websocket

    backend = make_backend(mode, url)
    hub = Hub(backend, queue_size=1024)

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        room = await ws.receive_text()
        async with hub.subscribe(ws, room):
            await ws.send_text("in")
            async for _ in ws.iter_text():
                pass

    async with hub, trio.open_nursery() as nursery:
        with trio.fail_after(30):
            await backend.ready.wait()
        await nursery.start(
            lambda task_status: serve_websocket(
                handler, "127.0.0.1", port, compression=None, ping_interval=None, task_status=task_status
            )
        )
        print("READY", flush=True)


async def publisher(mode: str, url: str, rooms: int, size: int) -> None:
    """Reads ``RATE SECONDS ROUND`` lines; publishes at that rate round-robin over the rooms (each
    publication in its own task, up to 256 on their way), each message ``<round> <room>
    <monotonic time>`` padded to ``size``; then prints what it published."""
    import trio

    from trio_ws import Hub

    backend = make_backend(mode, url)
    hub = Hub(backend, queue_size=1)
    stdin = trio.lowlevel.FdStream(0)
    in_flight = trio.CapacityLimiter(256)  # side by side: a round trip does not cap the rate

    async def one(round_id: str, room: int) -> None:
        async with in_flight:
            await hub.publish(f"room{room}", f"{round_id} {room} {time.monotonic():.6f} ".ljust(size, "x"))

    async with hub:
        with trio.fail_after(30):
            await backend.ready.wait()
        print("READY", flush=True)
        while line := (await stdin.receive_some()).decode().strip():
            rate, seconds, round_id = float(line.split()[0]), float(line.split()[1]), line.split()[2]
            per_room = [0] * rooms  # publications to each room (a failed one counts in "failed")
            errors = hub.stats.publish_errors
            start = trio.current_time()
            count = int(rate * seconds)
            async with trio.open_nursery() as nursery:
                for i in range(count):
                    await trio.sleep_until(start + i / rate)
                    per_room[i % rooms] += 1
                    nursery.start_soon(one, round_id, i % rooms)
            took = trio.current_time() - start
            report = {"per_room": per_room, "failed": hub.stats.publish_errors - errors, "rate": count / took}
            print(json.dumps(report), flush=True)


def cpu_time(pid: int) -> float:
    """Seconds of CPU a process's threads ran, to the nanosecond (schedstat), else to the tick."""
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        return sum(int((task / "schedstat").read_text().split()[0]) for task in tasks) / 1e9
    except (OSError, ValueError):
        return cpu_seconds(pid)


def spawn(*args: str, core: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "bench.bench_cluster", *args]
    if PIN:
        command = ["taskset", "-c", str(core), *command]
    return subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def ready(proc: subprocess.Popen[bytes], name: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != b"READY":
        raise RuntimeError(f"{name} did not start: {line!r}")


def free_port() -> int:
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port + 10000 < 65536:  # a cluster node's bus port is port + 10000
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port


def start_redis(directory: Path, count: int) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """``count`` == 1: one redis-server; otherwise a cluster of ``count`` primaries."""
    ports = [free_port() for _ in range(count)]
    procs = []
    for port in ports:
        command = [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        if count > 1:
            command += [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--dir",
                str(directory),
            ]
        if PIN:
            command = ["taskset", "-c", "0", *command]
        procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
    for port in ports:
        while (
            subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip()
            != b"PONG"
        ):
            time.sleep(0.05)  # another process starting
    if count > 1:
        nodes = [f"127.0.0.1:{port}" for port in ports]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *nodes, "--cluster-yes"], capture_output=True, check=True
        )
        while (
            b"cluster_state:ok"
            not in subprocess.run(
                ["redis-cli", "-p", str(ports[0]), "cluster", "info"], capture_output=True
            ).stdout
        ):
            time.sleep(0.05)
    return f"redis://127.0.0.1:{ports[0]}", procs


def connect(ports: list[int], subscribers: int, rooms: int) -> tuple[list[socket.socket], dict[int, int]]:
    """``subscribers`` connections, each in room ``i % rooms`` on worker ``room % 3``; returns
    them and each one's room (by file descriptor), once every one has joined."""
    socks, room_of = [], {}
    selector = selectors.DefaultSelector()
    for i in range(subscribers):
        room = i % rooms
        sock, _ = handshake(ports[room % WORKERS])
        sock.sendall(encode_frame(0x1, f"room{room}".encode(), mask=b"\x01\x02\x03\x04"))
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        socks.append(sock)
        room_of[sock.fileno()] = room
    waiting = set(room_of)
    while waiting:
        for key, _ in selector.select(timeout=30):
            joined = key.fileobj
            assert isinstance(joined, socket.socket)
            if joined.recv(64) == b"\x81\x02in":
                waiting.discard(joined.fileno())
                selector.unregister(joined)
    return socks, room_of


def measure(
    socks: list[socket.socket],
    room_of: dict[int, int],
    pub: subprocess.Popen[bytes],
    rate: float,
    args: argparse.Namespace,
    cpu: dict[str, list[int]],
) -> dict[str, Any]:
    """One round at ``rate``: latencies (ms) of every delivery, what was lost, and the CPU time
    of the ``cpu`` processes (``redis``, ``workers``: their pids) per 1,000 messages."""
    assert pub.stdin is not None
    assert pub.stdout is not None
    selector = selectors.DefaultSelector()
    buffers = {sock.fileno(): bytearray() for sock in socks}
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
    selector.register(pub.stdout, selectors.EVENT_READ)
    got = dict.fromkeys(buffers, 0)
    latencies: list[float] = []
    before = {name: sum(map(cpu_time, pids)) for name, pids in cpu.items()}
    round_id = next(ROUNDS)
    pub.stdin.write(f"{rate} {args.seconds} {round_id}\n".encode())
    pub.stdin.flush()
    report: dict[str, Any] | None = None
    deadline = float("inf")
    while time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.5):
            if key.fileobj is pub.stdout:
                report = json.loads(pub.stdout.readline())
                selector.unregister(pub.stdout)
                deadline = time.monotonic() + 3.0  # the drain: what has not come by then is lost
                continue
            readable = key.fileobj
            assert isinstance(readable, socket.socket)
            data = readable.recv(1 << 16)
            now = time.monotonic()
            buf = buffers[readable.fileno()]
            buf += data
            while len(buf) >= 2 and len(buf) >= 2 + (buf[1] & 0x7F):  # small unmasked text frames
                length = buf[1] & 0x7F
                payload = bytes(buf[2 : 2 + length])
                del buf[: 2 + length]
                fields = payload.split()
                if int(fields[0]) == round_id:  # (one of an earlier round, late, is not counted)
                    latencies.append((now - float(fields[2])) * 1000)
                    got[readable.fileno()] += 1
        if report is not None and sum(got.values()) >= sum(report["per_room"][room_of[fd]] for fd in got):
            break
    selector.close()
    assert report is not None
    published = sum(report["per_room"])
    spent = {name: sum(map(cpu_time, pids)) - before[name] for name, pids in cpu.items()}
    lost = sum(report["per_room"][room_of[fd]] for fd in got) - sum(got.values())
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else float("nan")
    return {
        "rate": rate,
        "achieved": report["rate"],
        "failed": report["failed"],
        "lost": lost,
        "deliveries": sum(got.values()),
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": p99,
        "redis_cpu": spent["redis"] * 1e6 / max(published, 1),  # ms per 1,000 messages
        "workers_cpu": spent["workers"] * 1e6 / max(published, 1),
        "held": lost == 0 and report["failed"] == 0 and report["rate"] >= 0.95 * rate and p99 <= args.max_p99,
    }


def run_mode(mode: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    directory = Path(os.environ.get("TMPDIR", "/tmp")) / f"trio_ws-bench-{mode}-{os.getpid()}"
    directory.mkdir(exist_ok=True)
    url, redis = start_redis(directory, 3 if mode == "cluster" else 1)
    ports = [free_port() for _ in range(WORKERS)]
    workers = [spawn("--serve", mode, str(port), url, core=0) for port in ports]
    procs = [*redis, *workers]
    try:
        for worker in workers:
            ready(worker, f"{mode} worker")
        pub = spawn("--publish", mode, url, str(args.rooms), str(args.size), core=1)
        procs.append(pub)
        ready(pub, f"{mode} publisher")
        started = time.monotonic()
        socks, room_of = connect(ports, args.subscribers, args.rooms)
        print(f"  {mode}: {len(socks):,} subscribers in {time.monotonic() - started:.1f} s", file=sys.stderr)
        rounds = []
        cpu = {"redis": [proc.pid for proc in redis], "workers": [proc.pid for proc in workers]}
        for rate in args.rates:
            for _ in range(2):  # a rate not held is tried once more: this machine is shared
                result = measure(socks, room_of, pub, rate, args, cpu)
                print(
                    f"  {mode} {rate:>6g}/s: achieved {result['achieved']:,.0f}/s, lost {result['lost']:,},"
                    f" failed {result['failed']}, p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms;"
                    f" CPU ms per 1,000 messages: Redis {result['redis_cpu']:.0f},"
                    f" workers {result['workers_cpu']:.0f}",
                    file=sys.stderr,
                )
                if result["held"]:
                    break
            rounds.append(result)
            if not result["held"]:
                break
        for sock in socks:
            sock.close()
        return rounds
    finally:
        for proc in reversed(procs):  # the workers before Redis: no reconnection noise
            proc.kill()
            proc.wait()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--size", type=int, default=64, help="bytes per message")
    parser.add_argument("--seconds", type=float, default=3.0, help="per rate")
    parser.add_argument("--rates", type=float, nargs="*", help="msg/s (default: 25 to 566 per 100 rooms)")
    parser.add_argument("--max-p99", type=float, default=250.0, help="ms: a rate above it is not held")
    parser.add_argument(
        "--reference", type=float, help="msg/s of the latency and CPU columns (100 per 100 rooms)"
    )
    parser.add_argument("--modes", nargs="*", default=MODES, choices=MODES)
    parser.add_argument("--repeats", type=int, default=2, help="passes over the setups; the best counts")
    args = parser.parse_args()
    scale = args.rooms / 100  # the same deliveries per second whatever the rooms' size
    args.rates = args.rates or [
        round(rate * scale) for rate in (25, 35, 50, 71, 100, 141, 200, 283, 400, 566)
    ]
    args.reference = args.reference or round(100 * scale)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = args.subscribers + 1000  # the workers inherit it: a third of these each, and Redis's
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(needed, soft)), hard))
    if PIN:
        os.sched_setaffinity(0, {1})
    passes: dict[str, list[list[dict[str, Any]]]] = {mode: [] for mode in args.modes}
    for repeat in range(args.repeats):  # interleaved, the order reversed every other pass
        for mode in args.modes if repeat % 2 == 0 else args.modes[::-1]:
            passes[mode].append(run_mode(mode, args))
    reference = args.reference
    print(
        f"\n{args.subscribers:,} subscribers over {args.rooms} rooms ({args.subscribers // args.rooms} each),"
        f" {WORKERS} workers, {args.size}-byte messages round-robin over the rooms,"
        f" {args.seconds:g} s a rate, best of {args.repeats} passes. Latency and CPU at {reference:g} msg/s"
        f" ({reference * args.subscribers / args.rooms:,.0f} deliveries/s):\n"
    )
    rounds = {mode: [r for run in runs for r in run] for mode, runs in passes.items()}
    best = {mode: max((r["rate"] for r in found if r["held"]), default=0.0) for mode, found in rounds.items()}
    at = {
        mode: min(
            (r for r in found if r["rate"] == reference and r["held"]), key=lambda r: r["p99"], default=None
        )
        for mode, found in rounds.items()
    }

    def ratio(value: float | None, base: float | None) -> str:
        return f"{value / base:.2f}" if value is not None and base else "-"

    def cell(row: dict[str, Any] | None, key: str, digits: int) -> str:
        return "-" if row is None else f"{row[key]:.{digits}f}"

    pattern_best = best.get("pattern")
    pattern_row = at.get("pattern")
    pattern_cpu = None if pattern_row is None else float(pattern_row["workers_cpu"])
    print(
        "| setup | p50 ms | p99 ms | highest rate held, msg/s (deliveries/s) | ÷ pattern |"
        " Redis CPU ms / 1,000 msg | workers CPU ms / 1,000 msg | ÷ pattern |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for mode in args.modes:
        row, held = at[mode], best[mode]
        print(
            f"| {TITLES[mode]} | {cell(row, 'p50', 1)} | {cell(row, 'p99', 1)} |"
            f" {held:,.0f} ({held * args.subscribers / args.rooms:,.0f}) | {ratio(held, pattern_best)} |"
            f" {cell(row, 'redis_cpu', 0)} | {cell(row, 'workers_cpu', 0)} |"
            f" {ratio(None if row is None else row['workers_cpu'], pattern_cpu)} |"
        )


if __name__ == "__main__":
    import trio

    if sys.argv[1:2] == ["--serve"]:
        trio.run(serve, sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif sys.argv[1:2] == ["--publish"]:
        trio.run(publisher, sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
