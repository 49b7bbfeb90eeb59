"""Prometheus metrics: `/metrics` on every API process and a small HTTP server on dispatchers.

Each process keeps its own registry (no prometheus multiprocess directory): scrape every process.
Per-process series (WebSocket connections, location updates, dispatch cycles) come from counters
and gauges the process updates itself. Cluster-wide series (`coop_rides`, `coop_offers`,
`coop_drivers_online`) are read from PostgreSQL and Redis at scrape time, so every API process
reports the same values: aggregate them with `max`, not `sum`.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import threading
from collections.abc import Iterator, Mapping
from http import HTTPStatus
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from dispatch.accounts.repository import AccountRepository
from dispatch.core.errors import CoopError, Forbidden, NotFound, Unauthorized, error_body
from dispatch.core.redis import RegionKeys
from dispatch.dispatcher.cycle import CycleReport
from dispatch.dispatcher.plausibility import Refusal
from dispatch.rides.repository import RideRepository
from dispatch.state import AppState, app_state, app_state_of

log = logging.getLogger(__name__)

# Why a driver position was refused: the gate's reasons, and the geo index refusing it itself.
REFUSAL_REASONS = (*(str(reason) for reason in Refusal), "index_refused")
BATCH_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class DispatcherMetrics:
    """What one dispatcher process saw in its cycles; `observe` is the worker's `on_cycle` hook."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.cycles = Counter(
            "coop_dispatch_cycles",
            "Dispatch cycles run (skipped when another dispatcher held the region)",
            ["region", "outcome"],
            registry=registry,
        )
        self.open_requests = Gauge(
            "coop_dispatch_open_requests",
            "Open requests without a pending offer in the last cycle",
            ["region"],
            registry=registry,
        )
        self.drivers_available = Gauge(
            "coop_dispatch_drivers_available",
            "Indexed drivers free to take an offer in the last cycle",
            ["region"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "coop_dispatch_batch_size",
            "Open requests per batch",
            ["region"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.solve_seconds = Histogram(
            "coop_dispatch_solve_seconds",
            "Assignment solve time per batch",
            ["region"],
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.cycle_seconds = Histogram(
            "coop_dispatch_cycle_seconds",
            "Whole cycle time (expire, give up, snapshot, plan, offer)",
            ["region"],
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.offers_sent = Counter(
            "coop_dispatch_offers_sent", "Offers made", ["region"], registry=registry
        )
        self.offers_expired = Counter(
            "coop_dispatch_offers_expired",
            "Offers that timed out unanswered",
            ["region"],
            registry=registry,
        )
        self.unfulfilled = Counter(
            "coop_dispatch_rides_unfulfilled",
            "Requests given up as unfulfilled",
            ["region"],
            registry=registry,
        )
        self.candidate_edges = Histogram(
            "coop_dispatch_candidate_edges",
            "Request-driver pairs considered per batch",
            ["region"],
            buckets=(0, 10, 100, 1_000, 10_000, 100_000, 1_000_000),
            registry=registry,
        )

    def observe(self, report: CycleReport) -> None:
        region = report.region
        self.cycles.labels(region, "ran" if report.ran else "skipped").inc()
        if not report.ran:
            return
        self.open_requests.labels(region).set(report.open_requests)
        self.drivers_available.labels(region).set(report.drivers_available)
        self.batch_size.labels(region).observe(report.open_requests)
        self.cycle_seconds.labels(region).observe(report.cycle_ms / 1000)
        self.offers_sent.labels(region).inc(report.offers_sent)
        self.offers_expired.labels(region).inc(report.expired_offers)
        self.unfulfilled.labels(region).inc(report.unfulfilled)
        if report.open_requests and report.drivers_available:
            self.solve_seconds.labels(region).observe(report.solve_ms / 1000)
            self.candidate_edges.labels(region).observe(report.candidate_edges)


class _SnapshotCollector(Collector):
    """Serves values refreshed by the `/metrics` route just before it renders."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[str, str, dict[tuple[str, ...], float], tuple[str, ...]]] = {}

    def set(
        self, name: str, doc: str, labels: tuple[str, ...], values: dict[tuple[str, ...], float]
    ) -> None:
        self.values[name] = (name, doc, values, labels)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, doc, values, labels in self.values.values():
            family = GaugeMetricFamily(name, doc, labels=list(labels))
            for label_values, value in values.items():
                family.add_metric(list(label_values), value)
            yield family


class _ProcessCollector(Collector):
    """Gauges read from the app state on every scrape."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "coop_websocket_connections",
            "Open WebSocket connections on this process",
            value=self.state.ws_limiter.total(),
        )
        yield GaugeMetricFamily(
            "coop_location_updates_pending",
            "Positions waiting for the next GEOADD flush",
            value=len(self.state.location_index._pending),
        )


class ApiMetrics:
    def __init__(self, state: AppState) -> None:
        self.state = state
        self.registry = CollectorRegistry()
        self.location_updates = Counter(
            "coop_location_updates_received",
            "Driver positions accepted from WebSockets",
            registry=self.registry,
        )
        self.received_last = 0
        self.indexed_last = 0
        self.location_indexed = Counter(
            "coop_location_updates_indexed",
            "Driver positions written to the geo index",
            registry=self.registry,
        )
        self.location_refused = Counter(
            "coop_location_updates_refused",
            "Driver positions refused (an error frame each), by reason",
            ["reason"],
            registry=self.registry,
        )
        self.refused_last: dict[str, int] = {}
        for reason in REFUSAL_REASONS:
            self.location_refused.labels(reason)
        self.snapshot = _SnapshotCollector()
        self.registry.register(self.snapshot)
        self.registry.register(_ProcessCollector(state))

    async def refresh(self) -> None:
        state = self.state
        index = state.location_index
        # Counted by the index, per position, and carried over here at scrape time.
        self.location_updates.inc(index.updates_received - self.received_last)
        self.received_last = index.updates_received
        self.location_indexed.inc(index.updates_indexed - self.indexed_last)
        self.indexed_last = index.updates_indexed
        refused = {str(reason): count for reason, count in state.position_gate.refused.items()}
        refused["index_refused"] = index.updates_refused
        for reason, count in refused.items():
            self.location_refused.labels(reason).inc(count - self.refused_last.get(reason, 0))
        self.refused_last = refused
        settings = state.settings
        keys = RegionKeys(settings.region)
        try:
            geo = await state.redis.zcard(keys.drivers_geo)
            async with state.sessionmaker() as session:
                rides = await RideRepository(session).ride_counts(settings.region)
                offers = await RideRepository(session).offer_counts(settings.region)
                online = await AccountRepository(session).drivers_online()
        except Exception:
            log.warning("metrics: cluster-wide counts unavailable", exc_info=True)
            return
        region = settings.region
        self.snapshot.set(
            "coop_drivers_online",
            "Drivers online (database) and positioned (geo index), cluster-wide",
            ("region", "source"),
            {(region, "database"): float(online), (region, "geo_index"): float(geo)},
        )
        self.snapshot.set(
            "coop_rides",
            "Rides by status, cluster-wide (requested = open requests)",
            ("region", "status"),
            {(region, status.value): float(count) for status, count in rides.items()},
        )
        self.snapshot.set(
            "coop_offers",
            "Offers by status, cluster-wide (accepted, declined, expired...)",
            ("region", "status"),
            {(region, status.value): float(count) for status, count in offers.items()},
        )


def install_api_metrics(app: FastAPI) -> None:
    """An `app_hooks` hook: counters on the app state and a `/metrics` route."""
    state = app_state_of(app)
    metrics = ApiMetrics(state)
    state.metrics = metrics
    # In `serve` mode the dispatcher loop runs in this process and reports here too.
    state.on_cycle = DispatcherMetrics(metrics.registry).observe
    if any(getattr(route, "path", None) == "/metrics" for route in app.router.routes):
        return

    async def prometheus_metrics(request: Request) -> Response:
        current = app_state(request)
        check_metrics_token(current.settings.metrics_token, request.headers)
        metrics = current.metrics
        await metrics.refresh()
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route(
        "/metrics", prometheus_metrics, methods=["GET"], tags=["ops"], include_in_schema=False
    )


def check_metrics_token(token: str, headers: Mapping[str, str]) -> None:
    if not token:
        raise NotFound(
            "metrics are served only when COOP_METRICS_TOKEN is set", code="metrics_disabled"
        )
    given = headers.get("authorization")
    if not given:
        raise Unauthorized(
            "send the metrics token as Authorization: Bearer <token>",
            code="metrics_token_required",
        )
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise Forbidden("not the metrics token", code="bad_metrics_token")


def _guarded(app: Any, token: str) -> Any:
    """The dispatcher's WSGI metrics app, answering only to the metrics token when one is set."""

    def guarded(environ: dict[str, Any], start_response: Any) -> Any:
        if token:
            try:
                check_metrics_token(token, {"authorization": environ.get("HTTP_AUTHORIZATION", "")})
            except CoopError as refused:
                status = f"{refused.status_code} {HTTPStatus(refused.status_code).phrase}"
                headers = [("Content-Type", "application/json")]
                if refused.status_code == 401:
                    headers.append(("WWW-Authenticate", "Bearer"))
                start_response(status, headers)
                return [json.dumps(error_body(refused)).encode()]
        return app(environ, start_response)

    return guarded


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def start_dispatcher_metrics(host: str, port: int, *, token: str) -> DispatcherMetrics:
    """The dispatcher's cycle metrics (pass `observe` to the worker as its `on_cycle`), served
    on `host:port` (port 0: collect only) to the metrics token when set; without one only on a
    loopback address. `token` is required by name: a caller that dropped it once served the
    metrics to everyone on loopback and to no one elsewhere."""
    registry = CollectorRegistry()
    metrics = DispatcherMetrics(registry)
    if port and not token and not _loopback(host):
        log.warning(
            "dispatcher metrics not served on %s: set COOP_METRICS_TOKEN to serve them beyond "
            "this machine",
            host,
        )
    elif port:
        try:
            app = _guarded(make_wsgi_app(registry), token)
            server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
        except OSError as exc:
            # A second dispatcher on the same machine must not die for its metrics port.
            log.warning("dispatcher metrics not served on %s:%d: %s", host, port, exc)
        else:
            log.info("dispatcher metrics on http://%s:%d/metrics", host, port)
    return metrics


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
