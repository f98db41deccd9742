"""The metrics' label mapping, without a database: every label a client or a flow
could influence lands in a closed set (anything else is `other`), refusals are told
from operating conditions, a 2601's money is `reversal`, HSM errors are counted by
kind (misconfigured, unavailable, other) on series that exist from the first use of
an operation, and the closed sets are at 0 from the start."""

from __future__ import annotations

from collections.abc import Awaitable

import pytest

from engine import metrics as m
from engine.hsm_runtime import HSM_OPS, metrics_kind, timed
from engine.metrics import EngineMetrics
from hsm import errors
from hsm.remote_wire import RemoteInternalError, RemoteProtocolError
from settlement.cancellation import ReversalResult
from terminals.messages import reversal as reversal_msg
from terminals.results import ResultCode


def sample(metrics: EngineMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_http_method_label_is_one_of_a_fixed_set() -> None:
    assert {m.http_method(x) for x in ("GET", "POST", "HEAD")} == {"GET", "POST", "HEAD"}
    assert m.http_method("PROPFIND") == m.OTHER
    assert m.http_method("get") == m.OTHER  # methods are case-sensitive tokens
    assert m.http_method("X" * 10_000) == m.OTHER


def test_money_kind_marks_2601_as_reversal_and_bounds_the_rest() -> None:
    assert m.money_kind("2207", "settle") == "settle"
    assert m.money_kind("2208", "cancel") == "cancel"
    assert m.money_kind(reversal_msg.INFNO, "cancel") == "reversal"
    assert m.money_kind(reversal_msg.INFNO, "settle") == "reinstate"  # a cancel reversed
    assert m.money_kind("2207", "refund") == m.OTHER


def test_refusals_are_business_outcomes_not_operating_conditions() -> None:
    refusals = {code for code in ResultCode if m.is_refusal(code)}
    assert ResultCode.ok not in refusals
    assert {ResultCode.visit_already_settled, ResultCode.signature_invalid} <= refusals
    operating = {c for c in ResultCode if c >= 9000}
    assert operating and not operating & refusals
    assert refusals | operating | {ResultCode.ok} == set(ResultCode)


def test_answers_count_refusals_apart() -> None:
    metrics = EngineMetrics(lambda: None)
    metrics.count_answer("2207", ResultCode.ok)
    metrics.count_answer("2207", ResultCode.visit_already_settled)
    metrics.count_answer("2207", ResultCode.database_unavailable)
    assert sample(metrics, "yikatong_tx_total", infno="2207", result="ok") == 1
    refusals = "yikatong_tx_refusals_total"
    assert sample(metrics, refusals, infno="2207", result="visit_already_settled") == 1
    assert sample(metrics, refusals, infno="2207", result="database_unavailable") is None
    assert sample(metrics, refusals, infno="2207", result="ok") is None


def test_error_series_start_at_zero_and_a_crash_is_not_counted_ok() -> None:
    metrics = EngineMetrics(lambda: None)
    metrics.start_tx_series(["2207"])
    for infno in ("2207", "unknown"):
        for result in ("database_unavailable", "hsm_unavailable", "internal_error"):
            assert sample(metrics, "yikatong_tx_total", infno=infno, result=result) == 0
    assert sample(metrics, "yikatong_tx_total", infno="2207", result="ok") is None
    metrics.count_answer("2207", None)  # the handler raised: answered 500
    assert sample(metrics, "yikatong_tx_total", infno="2207", result="internal_error") == 1
    assert sample(metrics, "yikatong_tx_total", infno="2207", result="ok") is None


def test_money_is_counted_in_fen_by_flow_fund_and_kind() -> None:
    metrics = EngineMetrics(lambda: None)
    metrics.count_money("2102", "settle", True, 1200, 300, 45)
    metrics.count_money(reversal_msg.INFNO, "cancel", False, 7, 8, 9)
    name = "yikatong_settlement_amount_fen_total"
    got = {
        fund: sample(metrics, name, flow="pharmacy", fund=fund, kind="settle") for fund in m.FUNDS
    }
    assert got == {"fund": 1200, "account": 300, "cash": 45}
    assert sample(metrics, name, flow="outpatient", fund="cash", kind="reversal") == 9
    assert sample(metrics, name, flow="outpatient", fund="cash", kind="settle") == 0


def test_reversal_labels_are_bounded() -> None:
    metrics = EngineMetrics(lambda: None)
    metrics.count_reversal("2207", "reversed")
    metrics.count_reversal("9999", "tombstoned")
    metrics.count_reversal("2102", "something")
    name = "yikatong_reversals_total"
    assert sample(metrics, name, oinfno="2207", result="reversed") == 1
    assert sample(metrics, name, oinfno=m.OTHER, result="tombstoned") == 1
    assert sample(metrics, name, oinfno="2102", result=m.OTHER) == 1
    assert set(m.REVERSAL_RESULTS) == {r.value for r in ReversalResult}
    assert set(m.REVERSAL_OINFNOS) >= reversal_msg.REVERSIBLE


def test_closed_sets_exist_at_zero_from_the_start() -> None:
    """A rate() over them is 0, not "no data", before the first one moves."""
    metrics = EngineMetrics(lambda: None)
    for oinfno in reversal_msg.REVERSIBLE:
        for result in m.REVERSAL_RESULTS:
            assert sample(metrics, "yikatong_reversals_total", oinfno=oinfno, result=result) == 0
    for flow in m.FLOWS:
        for fund in m.FUNDS:
            for kind in m.MONEY_KINDS:
                labels = {"flow": flow, "fund": fund, "kind": kind}
                assert sample(metrics, "yikatong_settlement_amount_fen_total", **labels) == 0
    assert sample(metrics, "yikatong_db_pool_acquire_timeouts_total") == 0
    assert sample(metrics, "yikatong_ledger_last_seal_timestamp_seconds") == 0


def test_card_auth_method_is_a_credential_name() -> None:
    metrics = EngineMetrics(lambda: None)
    metrics.count_card_auth("ecard", ResultCode.ok)
    metrics.count_card_auth("fingerprint", ResultCode.card_unknown)
    name = "yikatong_card_auth_total"
    assert sample(metrics, name, method="ecard", result="ok") == 1
    assert sample(metrics, name, method=m.OTHER, result="card_unknown") == 1
    assert set(m.CARD_AUTH_METHODS) == {"card", "ecard", "certno"}


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (errors.HsmUnavailable("token gone"), "unavailable"),
        (errors.KeyNotFound("terminal.mac.master"), "misconfigured"),
        (errors.KeyUsageError("wrong usage"), "misconfigured"),
        (RemoteProtocolError("not the remote protocol"), "misconfigured"),
        (errors.DataLengthError("8 bytes expected"), "other"),
        (RemoteInternalError("internal"), "other"),
        (errors.HsmError("no meaning"), "other"),
    ],
)
def test_hsm_errors_are_counted_by_kind(exc: errors.HsmError, kind: str) -> None:
    assert metrics_kind(exc) == kind
    assert kind in m.HSM_ERROR_KINDS


async def failing(exc: Exception) -> bytes:
    raise exc


async def test_timed_counts_an_hsm_error_on_series_made_at_first_use() -> None:
    metrics = EngineMetrics(lambda: None)
    call: Awaitable[bytes] = failing(errors.KeyNotFound("card.int.sm4"))
    with pytest.raises(errors.KeyNotFound):
        await timed(metrics, "soft", "verify_card_cryptogram", call)
    name = "yikatong_hsm_op_errors_total"
    op = {"op": "verify_card_cryptogram", "backend": "soft"}
    assert sample(metrics, name, **op, kind="misconfigured") == 1
    assert sample(metrics, name, **op, kind="unavailable") == 0
    assert sample(metrics, name, **op, kind="other") == 0
    assert sample(metrics, "yikatong_hsm_op_duration_seconds_count", **op) == 1
    assert "verify_card_cryptogram" in HSM_OPS


def test_a_negative_amount_is_logged_not_counted_and_does_not_raise() -> None:
    """Money is counted after the commit: a bad amount must not turn a committed
    settlement into an error answer (Counter.inc refuses negative values)."""
    metrics = EngineMetrics(lambda: None)
    metrics.count_money("2207", "settle", False, -5, 10, 0)
    name = "yikatong_settlement_amount_fen_total"
    assert sample(metrics, name, flow="outpatient", fund="fund", kind="settle") == 0
    assert sample(metrics, name, flow="outpatient", fund="account", kind="settle") == 10
