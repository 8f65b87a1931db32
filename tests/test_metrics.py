"""Prometheus metrics: a server with a Metrics observer, traffic of every kind, the endpoint scraped
over HTTP on the server's own port and read with prometheus_client's own parser."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from trio_ws import (
    ConnectionSummary,
    HandshakeRejected,
    HTTPResponse,
    Hub,
    Metrics,
    Request,
    ServerObserver,
    WebSocket,
    WebSocketDisconnect,
    open_websocket,
    open_websocket_server,
)
from trio_ws.protocol import PreparedMessage
from trio_ws.testing import open_test_client

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Counting:
    """An observer that hands everything to a Metrics and lets the test wait until ``n``
    connections have been reported over (accepted ones closed, refused ones answered)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.ended = 0
        self.changed = trio.Event()

    def handshake_answered(self, status: int) -> None:
        self.metrics.handshake_answered(status)
        if status != 101:
            self._ended()

    def connection_opened(self) -> None:
        self.metrics.connection_opened()

    def connection_closed(self, summary: ConnectionSummary) -> None:
        self.metrics.connection_closed(summary)
        self._ended()

    def handler_failed(self) -> None:
        self.metrics.handler_failed()

    def _ended(self) -> None:
        self.ended += 1
        self.changed.set()
        self.changed = trio.Event()

    async def wait_ended(self, n: int) -> None:
        with trio.fail_after(5):
            while self.ended < n:
                await self.changed.wait()


async def http(port: int, head: str) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(head.encode())
        data = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some():
                data += chunk
    return data


async def scrape(port: int, path: str = "/metrics") -> Samples:
    answer = await http(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
    assert b"\r\nContent-Type: text/plain; version=" in head
    return parse(body.decode())


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def handler(ws: WebSocket) -> None:
    if ws.path == "/refuse":
        await ws.reject(403)
        return
    await ws.accept()
    if ws.path == "/boom":
        raise RuntimeError("the handler failed")
    async for text in ws.iter_text():
        await ws.send_text(text)


async def test_a_scrape_counts_connections_handshakes_traffic_closes_and_errors() -> None:
    metrics = Metrics()
    observer = Counting(metrics)
    async with open_websocket_server(
        handler, "127.0.0.1", 0, observer=observer, process_request=metrics.endpoint("/metrics")
    ) as server:
        port = server.port
        async with open_websocket("127.0.0.1", port, "/echo") as ws:
            for text in ("hi", "there"):
                await ws.send_text(text)
                assert await ws.receive_text() == text
            during = await scrape(port)
        with pytest.raises(HandshakeRejected):
            async with open_websocket("127.0.0.1", port, "/refuse"):
                pass  # pragma: no cover
        async with open_websocket("127.0.0.1", port, "/boom") as ws:
            with pytest.raises(WebSocketDisconnect) as closed:
                await ws.receive_text()
            assert closed.value.code == 1011
        assert (await http(port, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(b"HTTP/1.1 426 ")
        await observer.wait_ended(5)  # /echo, the first scrape, /refuse, /boom, the 426
        after = await scrape(port)
    assert during[("trio_ws_connections_open", ())] == 1
    assert during[("trio_ws_handshakes_total", (("status", "101"),))] == 1
    assert during[("trio_ws_messages_received_total", ())] == 0  # counted when the connection ends
    assert after[("trio_ws_connections_open", ())] == 0
    handshakes = {
        labels[0][1]: value for (name, labels), value in after.items() if name == "trio_ws_handshakes_total"
    }
    assert handshakes == {"101": 2, "200": 1, "403": 1, "426": 1}
    assert after[("trio_ws_messages_received_total", ())] == 2
    assert after[("trio_ws_messages_sent_total", ())] == 2
    assert after[("trio_ws_bytes_received_total", ())] == len("hithere")
    assert after[("trio_ws_bytes_sent_total", ())] == len("hithere")
    closes = {
        labels[0][1]: value for (name, labels), value in after.items() if name == "trio_ws_closes_total"
    }
    assert closes == {"1000": 1, "1011": 1}
    assert after[("trio_ws_handler_errors_total", ())] == 1


async def test_the_endpoint_hands_other_requests_on_and_answers_only_plain_get_and_head() -> None:
    metrics = Metrics()

    async def health(request: Request) -> HTTPResponse | None:
        await trio.lowlevel.checkpoint()
        return HTTPResponse(200, "ok\n") if request.path == "/health" else None

    async def hello(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text(f"websocket at {ws.path}")

    hook = metrics.endpoint("/metrics", process_request=health)
    async with open_websocket_server(hello, "127.0.0.1", 0, observer=metrics, process_request=hook) as server:
        port = server.port
        assert (await http(port, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")).endswith(b"\r\n\r\nok\n")
        head = await http(port, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert head.endswith(b"\r\n\r\n")  # no body
        post = await http(port, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        assert post.startswith(b"HTTP/1.1 405 ")
        assert b"\r\nAllow: GET, HEAD\r\n" in post
        openmetrics = await http(
            port, "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text\r\n\r\n"
        )
        assert b"\r\nContent-Type: application/openmetrics-text" in openmetrics
        assert openmetrics.endswith(b"# EOF\n")
        async with open_websocket("127.0.0.1", port, "/metrics") as ws:  # an upgrade is the handler's
            assert await ws.receive_text() == "websocket at /metrics"
    # Without a hook of the application's, what is not the endpoint goes on to the handshake.
    async with open_test_client(hello, "/other", process_request=metrics.endpoint()) as client:
        assert await client.receive_text(timeout=5) == "websocket at /other"


async def test_hub_stats_are_exported_per_hub() -> None:
    metrics = Metrics(CollectorRegistry())
    hub = Hub(queue_size=1, overflow="drop_newest")
    metrics.add_hub(hub, "chat")
    with pytest.raises(ValueError, match="already"):
        metrics.add_hub(Hub(), "chat")
    joined = trio.Event()

    async def member(ws: WebSocket) -> None:
        await ws.accept()
        async with hub.subscribe(ws, "lobby"):
            joined.set()
            await ws.receive_text()

    async with open_test_client(member) as client:
        await joined.wait()
        for text in ("one", "two", "three"):  # no checkpoint between: the queue holds one
            hub.deliver_local("lobby", PreparedMessage(text))
        assert await client.receive_text(timeout=5) == "one"
        await trio.testing.wait_all_tasks_blocked()
        body, content_type = metrics.render()
        assert content_type.startswith("text/plain")
        samples = parse(body.decode())
        assert samples[("trio_ws_hub_rooms", (("hub", "chat"),))] == 1
        await client.send_text("bye")
    assert samples[("trio_ws_hub_delivered_total", (("hub", "chat"),))] == 1
    assert samples[("trio_ws_hub_dropped_total", (("hub", "chat"), ("overflow", "drop_newest")))] == 2
    assert samples[("trio_ws_hub_dropped_total", (("hub", "chat"), ("overflow", "drop_oldest")))] == 0
    assert samples[("trio_ws_hub_published_total", (("hub", "chat"),))] == 0
    for name in ("publish_timeouts", "recovered", "not_recovered", "replayed"):  # (of rooms with history)
        assert samples[(f"trio_ws_hub_{name}_total", (("hub", "chat"),))] == 0
    assert metrics.registry.get_sample_value("trio_ws_hub_delivered_total", {"hub": "chat"}) == 1


def test_metrics_is_a_server_observer_with_a_registry_of_its_own() -> None:
    first: ServerObserver = Metrics()
    second = Metrics()  # the same names again: no clash, each has its registry
    first.handshake_answered(101)
    first.connection_opened()
    first.connection_closed(ConnectionSummary("h:1", "/", None, 101, 1001, 0.5, 1, 2, 3, 4))
    assert isinstance(first, Metrics)
    value = first.registry.get_sample_value
    assert value("trio_ws_handshakes_total", {"status": "101"}) == 1
    assert value("trio_ws_connections_open") == 0
    assert value("trio_ws_bytes_sent_total") == 4
    assert value("trio_ws_closes_total", {"code": "1001"}) == 1
    assert second.registry.get_sample_value("trio_ws_handshakes_total", {"status": "101"}) is None
    custom = Metrics(CollectorRegistry(), namespace="chat")
    assert custom.registry.get_sample_value("chat_connections_open") == 0
