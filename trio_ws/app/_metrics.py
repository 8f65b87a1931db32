"""Prometheus metrics of a server (the optional extra ``trio-ws[metrics]``, prometheus-client):
:class:`Metrics` is the server's observer, and serves the metrics on the server's own port."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, final

import trio

from ..connection import HTTPResponse, Request
from ..server import ConnectionSummary, ProcessRequest
from ._broadcast import Hub

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

__all__ = ["Metrics"]


@final
class Metrics:
    """Prometheus metrics of one or more servers: pass it as ``observer=`` to
    :func:`~trio_ws.open_websocket_server`, and serve it with :meth:`endpoint`.

    Needs ``prometheus-client`` (``pip install 'trio-ws[metrics]'``; :class:`ImportError` otherwise).
    The metrics live in ``registry``, by default a registry of their own (``self.registry``); pass
    ``prometheus_client.REGISTRY`` to add them to the process's default one (once per process:
    a name registered twice raises ``ValueError``). Every name starts with ``namespace``:

    - ``trio_ws_connections_open`` (gauge): connections accepted and not yet over;
    - ``trio_ws_handshakes_total{status}``: opening handshakes answered, by HTTP status (101
      accepted; 403, 426, 429, 503... refused);
    - ``trio_ws_messages_received_total``, ``trio_ws_messages_sent_total``,
      ``trio_ws_bytes_received_total``, ``trio_ws_bytes_sent_total``: whole messages and their
      payload bytes, counted when each connection ends (a long connection's traffic shows then);
    - ``trio_ws_closes_total{code}``: accepted connections ended, by close code;
    - ``trio_ws_handler_errors_total``: handlers that raised;
    - for each hub of :meth:`add_hub`, ``trio_ws_hub_published_total``, ``_received_total``,
      ``_delivered_total``, ``_dropped_total{overflow}`` (``drop_oldest``, ``drop_newest``),
      ``_overflow_closes_total``, ``_publish_errors_total``, ``_publish_timeouts_total``,
      ``_recovered_total``, ``_not_recovered_total``, ``_replayed_total`` (its :class:`~trio_ws.HubStats`) and
      ``trio_ws_hub_rooms`` (rooms with members here), each with the label ``hub``.

    The server reports once per connection, never per message: counting costs nothing on the path
    of a message.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, namespace: str = "trio_ws") -> None:
        try:
            import prometheus_client as prom
        except ImportError as exc:  # pragma: no cover - the extra is installed for the tests
            raise ImportError(
                "trio_ws.Metrics needs prometheus-client: pip install 'trio-ws[metrics]'"
            ) from exc
        self.registry: CollectorRegistry = prom.CollectorRegistry() if registry is None else registry
        r, ns = self.registry, namespace
        self.connections_open = prom.Gauge(f"{ns}_connections_open", "Connections open", registry=r)
        self.handshakes = prom.Counter(
            f"{ns}_handshakes", "Opening handshakes answered, by HTTP status", ["status"], registry=r
        )
        self.messages_received = prom.Counter(f"{ns}_messages_received", "Messages received", registry=r)
        self.messages_sent = prom.Counter(f"{ns}_messages_sent", "Messages sent", registry=r)
        self.bytes_received = prom.Counter(f"{ns}_bytes_received", "Payload bytes received", registry=r)
        self.bytes_sent = prom.Counter(f"{ns}_bytes_sent", "Payload bytes sent", registry=r)
        self.closes = prom.Counter(f"{ns}_closes", "Connections closed, by close code", ["code"], registry=r)
        self.handler_errors = prom.Counter(f"{ns}_handler_errors", "Handlers that raised", registry=r)
        self._hubs: dict[str, Hub] = {}
        r.register(_HubCollector(self._hubs, ns))

    def add_hub(self, hub: Hub, name: str = "default") -> None:
        """Export ``hub.stats`` (read at each scrape) with the label ``hub=name``."""
        if name in self._hubs:
            raise ValueError(f"a hub named {name!r} is already exported")
        self._hubs[name] = hub

    # ---------------------------------------------------- the server's observer

    def handshake_answered(self, status: int) -> None:
        """Count a handshake answered with ``status``."""
        self.handshakes.labels(str(status)).inc()

    def connection_opened(self) -> None:
        """One more connection open."""
        self.connections_open.inc()

    def connection_closed(self, summary: ConnectionSummary) -> None:
        """One connection fewer; count its traffic and close code."""
        self.connections_open.dec()
        self.messages_received.inc(summary.messages_received)
        self.messages_sent.inc(summary.messages_sent)
        self.bytes_received.inc(summary.bytes_received)
        self.bytes_sent.inc(summary.bytes_sent)
        if summary.close_code is not None:
            self.closes.labels(str(summary.close_code)).inc()

    def handler_failed(self) -> None:
        """Count a handler that raised."""
        self.handler_errors.inc()

    # ------------------------------------------------------------ exposition

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The metrics as text, and its content type: the Prometheus text format, or OpenMetrics
        when ``accept`` (an ``Accept`` header) asks for it."""
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    def endpoint(
        self, path: str = "/metrics", process_request: ProcessRequest | None = None
    ) -> ProcessRequest:
        """A ``process_request`` hook that answers plain HTTP ``GET`` (or ``HEAD``) requests for
        ``path`` with the metrics, and hands every other request to ``process_request`` (the
        application's own hook, if any) — WebSocket upgrades to ``path`` included.

        The endpoint is open to whoever reaches the port: to restrict it, check the request in
        your own hook before calling this one. Another method on ``path`` gets 405.
        """

        async def serve_metrics(request: Request) -> HTTPResponse | None:
            if request.path == path and not request.is_upgrade:
                await trio.lowlevel.checkpoint()
                if request.method not in ("GET", "HEAD"):
                    return HTTPResponse(405, "method not allowed\n", [("Allow", "GET, HEAD")])
                body, content_type = self.render(request.headers.get("accept", ""))
                return HTTPResponse(200, body, [("Cache-Control", "no-store")], content_type)
            if process_request is not None:
                return await process_request(request)
            await trio.lowlevel.checkpoint()
            return None

        return serve_metrics


class _HubCollector:
    """Reads the stats of the exported hubs at each scrape."""

    def __init__(self, hubs: dict[str, Hub], namespace: str) -> None:
        self.hubs = hubs
        self.namespace = namespace

    def describe(self) -> Iterable[Metric]:
        return list(self._families(with_values=False))

    def collect(self) -> Iterable[Metric]:
        return list(self._families(with_values=True))

    def _families(self, with_values: bool) -> Iterable[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        ns = f"{self.namespace}_hub"
        counters: list[tuple[str, str, Callable[[Hub], int]]] = [
            ("published", "Messages published", lambda h: h.stats.published),
            ("received", "Messages that came from the backend", lambda h: h.stats.received),
            ("delivered", "Messages written to a connection", lambda h: h.stats.delivered),
            ("overflow_closes", "Connections closed by the CLOSE overflow policy", lambda h: h.stats.closed),
            ("publish_errors", "Publications the backend could not take", lambda h: h.stats.publish_errors),
            (
                "publish_timeouts",
                "Publications that timed out (may still arrive)",
                lambda h: h.stats.publish_timeouts,
            ),
            ("recovered", "Members that came back and got what they missed", lambda h: h.stats.recovered),
            (
                "not_recovered",
                "Members whose missed messages the history no longer held",
                lambda h: h.stats.not_recovered,
            ),
            (
                "replayed",
                "Messages sent from a room's history to joining members",
                lambda h: h.stats.replayed,
            ),
        ]
        for name, doc, read in counters:
            family = CounterMetricFamily(f"{ns}_{name}", doc, labels=["hub"])
            for hub_name, hub in self.hubs.items() if with_values else ():
                family.add_metric([hub_name], read(hub))
            yield family
        dropped = CounterMetricFamily(
            f"{ns}_dropped", "Messages dropped by overflow", labels=["hub", "overflow"]
        )
        rooms = GaugeMetricFamily(f"{ns}_rooms", "Rooms with members in this process", labels=["hub"])
        for hub_name, hub in self.hubs.items() if with_values else ():
            dropped.add_metric([hub_name, "drop_oldest"], hub.stats.dropped_oldest)
            dropped.add_metric([hub_name, "drop_newest"], hub.stats.dropped_newest)
            rooms.add_metric([hub_name], len(hub.rooms))
        yield dropped
        yield rooms
