"""Prometheus metrics of the engine, in a registry per application instance.

Names follow Prometheus conventions (`_total` is added to counters by the client
library, `_seconds` for durations, money in integer fen — the ledger's own unit —
named `_fen`). Latency buckets are fixed SLO buckets (`constants.HTTP_LATENCY_BUCKETS_S`);
database round trips per request have fixed integer buckets
(`constants.TX_DB_ROUND_TRIPS_BUCKETS`).

Every label value comes from a closed set, so that no client can blow up the label
cardinality: `route` is the route's path pattern (never the raw path) or `unmatched`,
`method` an HTTP method of `HTTP_METHODS` or `other`, `infno` a routed transaction code
or `unknown`, `result` a `ResultCode` name, `oinfno` one of `REVERSAL_OINFNOS` or
`other`, and `flow`, `fund`, `kind` the tuples below (the label functions here map
anything else to `other`). docs/OPERATIONS.md lists every family and what an operator
does when it moves.

Pool gauges are read at scrape time from the live pool (in memory, no I/O); the ledger
gauges are set by the engine's sealer after each run, never by a query per scrape.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass

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
from settlement.cancellation import ReversalResult
from settlement.proofs import Credential
from terminals.messages import reversal as reversal_msg
from terminals.results import ResultCode

log = logging.getLogger("engine.metrics")

OTHER = "other"  # any value outside a label's set
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
FLOWS = ("outpatient", "pharmacy")
FUNDS = ("fund", "account", "cash")  # pooled fund (incl. secondary), personal account, cash
# settle and cancel (2207/2102, 2208/2103); reversal: a 2601 that cancelled a settlement
# (money back); reinstate: a 2601 that undid a cancellation (money paid again).
MONEY_KINDS = ("settle", "cancel", "reversal", "reinstate")
REVERSAL_OINFNOS = tuple(sorted(reversal_msg.REVERSIBLE | reversal_msg.NATIONALLY_REVERSIBLE))
REVERSAL_RESULTS = tuple(r.value for r in ReversalResult)
CARD_AUTH_METHODS = tuple(c.name for c in Credential)
HSM_ERROR_KINDS = ("misconfigured", "unavailable", "other")
# The `result` of an answer the handler did not decide: an unexpected failure, HTTP 500.
INTERNAL_ERROR = "internal_error"
OPERATING_CONDITIONS_MIN = 9000  # terminals.results: 9xxx, try again (or call the operator)
TX_ERROR_RESULTS = (
    *(c.name for c in ResultCode if c >= OPERATING_CONDITIONS_MIN),
    INTERNAL_ERROR,
)


def bounded(value: str, allowed: Collection[str]) -> str:
    return value if value in allowed else OTHER


def http_method(method: str) -> str:
    """The `method` label: a client may send any token as its method."""
    return bounded(method, HTTP_METHODS)


def money_kind(infno: str, kind: str) -> str:
    """The `kind` label: a 2601's money moves back as a cancellation's does (its flow
    says "cancel") or forward as a settlement's (a cancellation reversed: "settle");
    the label tells them from 2208's and 2207's."""
    if infno == reversal_msg.INFNO:
        return "reinstate" if kind == "settle" else "reversal"
    return bounded(kind, MONEY_KINDS)


def is_refusal(code: ResultCode) -> bool:
    """A business refusal (infcode -1, the request's own fault or state): not success
    and not an operating condition (9xxx: database, HSM, overload), which the
    database, HSM and pool families tell about."""
    return code is not ResultCode.ok and code < OPERATING_CONDITIONS_MIN


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
        self.settlement_amount = Counter(
            "yikatong_settlement_amount_fen",
            "Money moved, in integer fen (1/100 yuan, the ledger's exact unit), by flow, fund"
            " (pooled fund, personal account, cash) and kind; net = settle - cancel - reversal + reinstate.",
            ["flow", "fund", "kind"],
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
            buckets=constants.HSM_LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.hsm_errors = Counter(
            "yikatong_hsm_op_errors",
            "HSM operations that raised, by operation, backend and kind (engine.hsm_runtime).",
            ["op", "backend", "kind"],
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
        self._operations(get_pool)

    def _operations(self, get_pool: Callable[[], asyncpg.Pool | None]) -> None:
        """What an operator alerts on beside the request path: refusals, replays,
        reversals, the pool's wait and the ledger's seal."""
        self.tx_refusals = Counter(
            "yikatong_tx_refusals",
            "Business refusals (infcode -1 for the request's own fault or state, not the 9xxx"
            " operating conditions), by infno and result code name.",
            ["infno", "result"],
            registry=self.registry,
        )
        self.idempotent_replays = Counter(
            "yikatong_idempotent_replays",
            "Repeats of a msgid answered with the answer stored for it, by infno.",
            ["infno"],
            registry=self.registry,
        )
        self.reversals = Counter(
            "yikatong_reversals",
            "2601 reversals answered (not refused), by the reversed code and result:"
            " reversed, already_reversed, tombstoned (the original never arrived).",
            ["oinfno", "result"],
            registry=self.registry,
        )
        self.pool_acquire = Histogram(
            "yikatong_db_pool_acquire_duration_seconds",
            "Time waiting for a database pool connection (timed-out waits included).",
            buckets=constants.DB_POOL_ACQUIRE_BUCKETS_S,
            registry=self.registry,
        )
        self.pool_acquire_timeouts = Counter(
            "yikatong_db_pool_acquire_timeouts",
            "Waits for a database pool connection that timed out (database.acquire_timeout_s).",
            registry=self.registry,
        )
        self.registry.register(_PoolCollector(get_pool))
        self._ledger()
        self._hsm_series: dict[tuple[str, str], HsmOpSeries] = {}
        # Series of the closed sets exist at 0 from the start, so that a rate() is 0,
        # not "no data", until the first one moves.
        for oinfno in sorted(reversal_msg.REVERSIBLE):
            for result in REVERSAL_RESULTS:
                self.reversals.labels(oinfno, result)
        for flow in FLOWS:
            for fund in FUNDS:
                for kind in MONEY_KINDS:
                    self.settlement_amount.labels(flow, fund, kind)

    def _ledger(self) -> None:
        self.ledger_unsealed = Gauge(
            "yikatong_ledger_unsealed_entries",
            "Committed journal entries not yet sealed into their region's hash chain, as of"
            " the sealer's last run.",
            registry=self.registry,
        )
        self.ledger_seal_lag = Gauge(
            "yikatong_ledger_seal_lag_seconds",
            "Age of the oldest unsealed journal entry at the sealer's last run; 0 when none.",
            registry=self.registry,
        )
        self.ledger_last_seal = Gauge(
            "yikatong_ledger_last_seal_timestamp_seconds",
            "Unix time of the sealer's last successful run; 0 before the first.",
            registry=self.registry,
        )

    # -- recording, with the label mapping in one place -------------------------------------

    def count_answer(self, infno: str, code: ResultCode | None) -> None:
        """One settlement-protocol answer (`infno` already bounded by the caller);
        `code` None: the handler failed unexpectedly and the answer was HTTP 500."""
        result = INTERNAL_ERROR if code is None else code.name
        self.tx_total.labels(infno, result).inc()
        if code is not None and is_refusal(code):
            self.tx_refusals.labels(infno, code.name).inc()

    def start_tx_series(self, infnos: Iterable[str]) -> None:
        """The error series of every routed code (and `unknown`) at 0 from the start:
        a series born at its first error has no increase for rate() to see, so the
        first burst of errors after a restart would escape the error-rate alerts."""
        for infno in (*infnos, "unknown"):
            for result in TX_ERROR_RESULTS:
                self.tx_total.labels(infno, result)

    def count_money(
        self, infno: str, kind: str, pharmacy: bool, fund_fen: int, account_fen: int, cash_fen: int
    ) -> None:
        """What a committed settlement, cancellation or reversal moved. Counted after
        the commit, so it must not raise: a negative amount (a bug elsewhere: every
        one of them is a payment, whatever its direction) is logged, not counted."""
        flow = "pharmacy" if pharmacy else "outpatient"
        kind = money_kind(infno, kind)
        for fund, fen in zip(FUNDS, (fund_fen, account_fen, cash_fen), strict=True):
            if fen < 0:
                log.error("negative amount not counted", extra={"fields": {"infno": infno}})
                continue
            self.settlement_amount.labels(flow, fund, kind).inc(fen)

    def count_reversal(self, oinfno: str, result: str) -> None:
        self.reversals.labels(
            bounded(oinfno, REVERSAL_OINFNOS), bounded(result, REVERSAL_RESULTS)
        ).inc()

    def count_card_auth(self, method: str, code: ResultCode) -> None:
        self.card_auth_total.labels(bounded(method, CARD_AUTH_METHODS), code.name).inc()

    def pool_waited(self, waited_s: float, *, timed_out: bool) -> None:
        """engine.db.pool.acquire's report of one wait for a connection."""
        self.pool_acquire.observe(waited_s)
        if timed_out:
            self.pool_acquire_timeouts.inc()

    def ledger_backlog(self, entries: int, oldest_age_s: float, *, sealed_at_s: float) -> None:
        """The sealer's report after a successful run (engine.server)."""
        self.ledger_unsealed.set(entries)
        self.ledger_seal_lag.set(oldest_age_s)
        self.ledger_last_seal.set(sealed_at_s)

    def hsm_series(self, op: str, backend: str) -> HsmOpSeries:
        """The latency and error series of one HSM operation on one backend, made on
        first use with every error kind at 0 (ops are engine.hsm_runtime.HsmOp, the
        backend is the process's one: a handful of pairs)."""
        key = (op, backend)
        found = self._hsm_series.get(key)
        if found is None:
            errors = {kind: self.hsm_errors.labels(op, backend, kind) for kind in HSM_ERROR_KINDS}
            found = self._hsm_series[key] = HsmOpSeries(
                self.hsm_latency.labels(op, backend), errors
            )
        return found


@dataclass(frozen=True, slots=True)
class HsmOpSeries:
    latency: Histogram
    errors: Mapping[str, Counter]  # by kind: HSM_ERROR_KINDS
