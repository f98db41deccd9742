"""Prometheus metrics of the engine, in a registry per application instance.

Names follow Prometheus conventions (`_total` is added to counters by the client
library, `_seconds` for durations). Latency buckets are fixed SLO buckets
(`constants.HTTP_LATENCY_BUCKETS_S`); database round trips per request have fixed
integer buckets (`constants.TX_DB_ROUND_TRIPS_BUCKETS`). The `route` label is the
route's path pattern (never the raw path) or `unmatched`, so a client cannot blow up
label cardinality.
Pool gauges are read at scrape time from the live pool.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator

import asyncpg
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from engine import __version__, constants

# `*_created` series double the exposition size and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]


class _PoolCollector(Collector):
    """DB pool gauges read from the pool at scrape time."""

    def __init__(self, get_pool: Callable[[], asyncpg.Pool | None]) -> None:
        self._get_pool = get_pool

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return self._families(None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return self._families(self._get_pool())

    def _families(self, pool: asyncpg.Pool | None) -> Iterator[GaugeMetricFamily]:
        conns = GaugeMetricFamily(
            "yikatong_db_pool_connections",
            "Connections held by the database pool, by state.",
            labels=["state"],
        )
        limit = GaugeMetricFamily(
            "yikatong_db_pool_connections_max", "Maximum size of the database pool."
        )
        if pool is not None:
            size = pool.get_size()
            idle = pool.get_idle_size()
            conns.add_metric(["idle"], idle)
            conns.add_metric(["in_use"], size - idle)
            limit.add_metric([], pool.get_max_size())
        yield conns
        yield limit


class EngineMetrics:
    def __init__(self, get_pool: Callable[[], asyncpg.Pool | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "yikatong_http_requests",
            "HTTP requests answered, by route pattern, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "yikatong_http_request_duration_seconds",
            "Time from request received to response written, by route and status.",
            ["route", "method", "status"],
            buckets=constants.HTTP_LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.http_in_flight = Gauge(
            "yikatong_http_requests_in_flight",
            "Requests being handled now.",
            registry=self.registry,
        )
        self.db_up = Gauge(
            "yikatong_db_up",
            "1 if the last readiness probe of the database succeeded, else 0.",
            registry=self.registry,
        )
        self.db_probe_latency = Histogram(
            "yikatong_db_probe_duration_seconds",
            "Duration of successful database readiness probes.",
            buckets=constants.HTTP_LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.tx_total = Counter(
            "yikatong_tx",
            "Settlement-protocol transactions answered, by infno and result code name.",
            ["infno", "result"],
            registry=self.registry,
        )
        self.tx_latency = Histogram(
            "yikatong_tx_duration_seconds",
            "Time to answer a settlement-protocol transaction, by infno.",
            ["infno"],
            buckets=constants.HTTP_LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.tx_db_round_trips = Histogram(
            "yikatong_tx_db_round_trips",
            "Round trips to PostgreSQL made for one settlement-protocol request, by infno:"
            " simple queries (BEGIN, COMMIT, ROLLBACK), executions of prepared statements"
            " (an executemany is one), and prepares and closes on statement-cache misses."
            " Connection setup is not counted. Sum over count is the mean per request.",
            ["infno"],
            buckets=constants.TX_DB_ROUND_TRIPS_BUCKETS,
            registry=self.registry,
        )
        self.settled_fen = Counter(
            "yikatong_settled_fen",
            "Money moved by settlements (kind=settle) and their cancellations (kind=cancel),"
            " in fen, by payer: fund, account, cash. Net settled = settle - cancel.",
            ["kind", "payer"],
            registry=self.registry,
        )
        # The HSM part of card authentication (random_bytes, verify_card_cryptogram,
        # external_auth_cryptogram, verify_signature) is timed by hsm_latency below.
        self.card_auth_total = Counter(
            "yikatong_card_auth",
            "1101 identifications by credential method (card, ecard, certno) and result code name.",
            ["method", "result"],
            registry=self.registry,
        )
        self.hsm_latency = Histogram(
            "yikatong_hsm_op_duration_seconds",
            "Duration of HSM operations, by operation and backend.",
            ["op", "backend"],
            buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5),
            registry=self.registry,
        )
        self.hsm_errors = Counter(
            "yikatong_hsm_op_errors",
            "HSM operations that raised, by operation, backend and error class.",
            ["op", "backend", "error"],
            registry=self.registry,
        )
        build = Info("yikatong_build", "Build of the running engine.", registry=self.registry)
        build.info(
            {
                "version": __version__,
                "python": platform.python_version(),
                "implementation": platform.python_implementation(),
            }
        )
        self.registry.register(_PoolCollector(get_pool))
