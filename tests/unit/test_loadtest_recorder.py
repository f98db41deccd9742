"""The load tester's recorder: HDR percentiles against data whose percentiles are
known, outcome counting, the per-second timeline by intended time, and merging the
recorders of several generator processes into one."""

from __future__ import annotations

import msgspec
import pytest

from loadtest.recorder import OK, Recorder, WireRecorder, summarize
from loadtest.report import outcomes, throughput, timeline


def _uniform(rec: Recorder, n: int, *, infno: str = "2207", t: float = 0.0) -> None:
    """Latencies 1, 2, ..., n ms, all intended at t0 + t."""
    for i in range(1, n + 1):
        rec.answer(infno, rec.t0 + t, rec.t0 + t + i / 1000, 200, OK)


def test_percentiles_of_1_to_10000_ms_match_the_exact_values_within_hdr_precision() -> None:
    rec = Recorder(t0=100.0)
    _uniform(rec, 10_000)
    s = summarize(rec.total)
    assert s.count == 10_000
    # Exact: p50 = 5000 ms, p90 = 9000, p99 = 9900, p99.9 = 9990, max 10000. HDR with 3
    # significant figures may round up by at most 0.1 %.
    for got, exact in ((s.p50_ms, 5000), (s.p90_ms, 9000), (s.p99_ms, 9900), (s.p999_ms, 9990)):
        assert exact <= got <= exact * 1.001, (got, exact)
    assert 10_000 <= s.max_ms <= 10_010
    assert s.mean_ms == pytest.approx(5000.5, rel=1e-3)


def test_a_single_outlier_is_the_max_and_beyond_p99() -> None:
    rec = Recorder(t0=0.0)
    for _ in range(999):
        rec.answer("1101", 0.0, 0.002, 200, OK)  # 2 ms
    rec.answer("1101", 0.0, 1.5, 200, OK)  # 1.5 s
    s = summarize(rec.total)
    assert 2.0 <= s.p99_ms <= 2.002
    assert 1500 <= s.max_ms <= 1501.5
    assert s.p999_ms <= 2.002  # 999 of 1000 are at 2 ms: p99.9 is still 2 ms


def test_outcomes_are_counted_by_infno_status_and_result_and_errors_exclude_ok() -> None:
    rec = Recorder(t0=0.0)
    rec.answer("2201", 0.0, 0.01, 200, OK)
    rec.answer("2207", 0.0, 0.01, 200, "visit_already_settled")
    rec.answer("2207", 0.0, 0.01, 503, "database_unavailable")
    rec.answer("2207", 0.0, 10.0, 0, "timeout")
    rec.answer("2207", 0.0, 10.0, 0, "timeout")
    assert rec.errors() == 4
    assert rec.answered() == 5
    got = {(o.infno, o.http_status, o.result): o.count for o in outcomes(rec)}
    assert got == {
        ("2201", 200, OK): 1,
        ("2207", 200, "visit_already_settled"): 1,
        ("2207", 503, "database_unavailable"): 1,
        ("2207", 0, "timeout"): 2,
    }


def test_timeline_files_latency_under_the_intended_second_and_answers_under_arrival() -> None:
    rec = Recorder(t0=50.0)
    rec.due(50.2)
    rec.answer("1101", 50.2, 52.7, 200, OK)  # due in second 0, answered in second 2
    rec.unit_completed(52.7, "person-info")
    points = {p.second: p for p in timeline(rec)}
    assert points[0].due == 1 and points[0].answered == 0
    assert 2500 <= points[0].p50_ms <= 2520  # latency 2.5 s, counted where it was due
    assert points[2].answered == 1 and points[2].units == 1 and points[2].due == 0


def test_throughput_counts_settlements_only_for_settling_scenarios() -> None:
    rec = Recorder(t0=0.0)
    for _ in range(30):
        rec.unit_completed(1.0, "outpatient")
    for _ in range(10):
        rec.unit_completed(1.0, "person-info")
    tp = throughput(rec, 10.0, 5.0, "unit", {"outpatient"})
    assert tp.units_per_s == 4.0
    assert tp.settlements_per_s == 3.0


def test_recorders_of_two_processes_merge_into_the_sum_of_both() -> None:
    a, b, both = Recorder(t0=0.0), Recorder(t0=0.0), Recorder(t0=0.0)
    for rec, lo in ((a, 1), (b, 5001)):
        for i in range(lo, lo + 5000):
            rec.due(0.5)
            rec.answer("2207", 0.5, 0.5 + i / 1000, 200, OK if i % 100 else "timeout")
            both.due(0.5)
            both.answer("2207", 0.5, 0.5 + i / 1000, 200, OK if i % 100 else "timeout")
        rec.unit_completed(3.0, "outpatient")
    # Through the wire format, as a worker process sends it.
    wire = msgspec.msgpack.decode(msgspec.msgpack.encode(b.to_wire()), type=WireRecorder)
    a.merge_wire(wire)
    assert a.total.get_total_count() == 10_000
    assert summarize(a.total) == summarize(both.total)
    assert summarize(a.by_infno["2207"]) == summarize(both.by_infno["2207"])
    assert dict(a.outcomes) == dict(both.outcomes)
    assert a.completed == 2 and a.completed_by["outpatient"] == 2
    assert timeline(a)[0].due == 10_000
