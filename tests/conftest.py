"""Shared by the tests: the tests folder on sys.path (for ``helpers``), TLS fixtures, a
redis-server of each test's own, and a Redis Cluster of each test module's own."""

import ssl
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio
import trustme

sys.path.insert(0, str(Path(__file__).parent))

from helpers import free_port
from redis_cluster import RedisClusterNodes
from redis_server import Redis


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A certificate authority of the test's own."""
    return trustme.CA()


@pytest.fixture(scope="module")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    """A server's TLS context with a certificate for localhost and 127.0.0.1."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    """A client's TLS context that trusts :func:`ca`."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    """A redis-server on a free port, stopped (thawed first if frozen) after the test."""
    async with trio.open_nursery() as nursery:
        server = Redis(free_port(), nursery)
        await server.start()
        try:
            yield server
        finally:
            if server.process is not None:
                server.thaw()  # (a test may leave it frozen)
                await server.stop()
            nursery.cancel_scope.cancel()


@pytest.fixture(scope="module")
def redis_cluster_nodes() -> Iterator[RedisClusterNodes]:
    """A Redis Cluster of six redis-server processes (three primaries, one replica each) for a test
    module: it takes about two seconds to start. Use ``redis_cluster``."""
    nodes = RedisClusterNodes()
    try:
        trio.run(nodes.start)
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
async def redis_cluster(redis_cluster_nodes: RedisClusterNodes) -> RedisClusterNodes:
    """The module's Redis Cluster, healed first: a node an earlier test killed is started again (it
    rejoins as a replica), every replica is in sync and the cluster is ok."""
    await redis_cluster_nodes.wait_healthy()
    return redis_cluster_nodes
