"""The engine's /metrics after real traffic, as an operator's Prometheus reads it:
`promtool check metrics` passes with nothing to say (base units, `_total` counters,
help on every family); the families of issue 13 have samples — money by flow, fund and
kind to the fen of the answers, reversals by result, idempotent replays, refusals by
result code, pool waits, HSM errors by kind, the ledger's seal — and every label
value stays in its closed set, whatever a client sends. The ledger gauges follow the
sealer: a transaction that holds back the seal horizon makes the backlog and its lag
grow, and they fall back to 0 once it ends.

Skipped only where promtool is missing and CI is not set (Debian's `prometheus`
package provides it; deploy/bootstrap.sh installs it): on CI a missing promtool fails.
"""

from __future__ import annotations

import asyncio
import http.client
import subprocess
import time
import urllib.parse
from collections.abc import Callable

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine import metrics as m
from engine.hsm_runtime import HSM_OPS
from simulators.ecard import platform_from_env
from terminals.client import BusinessError, Client, OutcomeUnknown
from terminals.messages import setl
from terminals.messages.outpatient import cancel as cancel_msg
from terminals.messages.pharmacy import cancel as pharmacy_cancel_msg
from terminals.messages.pharmacy import settle as pharmacy_settle_msg
from terminals.results import ResultCode
from tests.e2e.conftest import Deployment
from tests.e2e.helpers import fen, open_visit
from tests.e2e.test_pharmacy import BASKET, druginfo, drugs
from tests.e2e.test_reversal import lost_settlement
from tests.support import hsm_env, http_get, prometheus_tool

pytestmark = pytest.mark.slow

Sample = tuple[str, dict[str, str], float]  # (sample name, labels, value)


def check_metrics(tool: str, text: str) -> tuple[int, str, str]:
    """`promtool check metrics` on an exposition: (exit status, stdout, stderr)."""
    done = subprocess.run(
        [tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    return done.returncode, done.stdout, done.stderr


def scrape(d: Deployment) -> str:
    status, headers, body = http_get(d.engine.url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    return body.decode()


def samples(text: str) -> dict[str, list[Sample]]:
    """Family name (as the parser names it: counters without `_total`) → samples."""
    return {
        f.name: [(s.name, s.labels, s.value) for s in f.samples]
        for f in text_string_to_metric_families(text)
    }


def value(families: dict[str, list[Sample]], sample: str, **labels: str) -> float:
    """The sum of the samples named `sample` with `labels` (0 when there is none)."""
    return sum(
        v
        for family in families.values()
        for name, have, v in family
        if name == sample and all(have.get(k) == want for k, want in labels.items())
    )


def delta(
    before: dict[str, list[Sample]], after: dict[str, list[Sample]], sample: str, **labels: str
) -> float:
    return value(after, sample, **labels) - value(before, sample, **labels)


def send_method(d: Deployment, method: str) -> int:
    """A request with a method no route knows (one the HTTP parser accepts: it answers
    400 itself to a token it does not know): its `method` label must stay bounded."""
    url = urllib.parse.urlsplit(d.engine.url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=5)
    try:
        conn.request(method, "/healthz")
        return conn.getresponse().status
    finally:
        conn.close()


async def outpatient_traffic(d: Deployment, his: Client) -> tuple[setl.Output, setl.Output]:
    """2207 settled and cancelled by 2208, a refusal (the same visit settled again)."""
    visit = await open_visit(his, d.person(), [("TJIA0001", "100.00", "2")])
    out = await his.settle(visit.region, visit.settle_data())
    with pytest.raises(BusinessError) as err:
        await his.settle(visit.region, visit.settle_data())
    assert err.value.code is ResultCode.visit_already_settled
    info = out.setlinfo
    undone = await his.cancel_settlement(
        visit.region,
        cancel_msg.Data(setl_id=info.setl_id or "", mdtrt_id=visit.mdtrt_id, psn_no=info.psn_no),
    )
    return out, undone


async def pharmacy_traffic(d: Deployment) -> tuple[setl.SetlInfo, ...]:
    """2102 settled and cancelled by 2103; another 2102 whose answer the POS "lost",
    resent (a replay: it had committed) and reversed by 2601."""
    person = d.person(employee=True)
    region = person.insuplc_admdvs
    lines = drugs(BASKET)
    async with d.client(d.pharmacy()) as pos:
        await pos.sign_in()
        out = await pos.pharmacy_settle(region, druginfo(person, lines), lines)
        info = out.setlinfo
        undone = await pos.pharmacy_cancel(
            region,
            pharmacy_cancel_msg.Data(
                setl_id=info.setl_id or "", mdtrt_id=info.mdtrt_id, psn_no=person.psn_no
            ),
        )
        few = drugs(BASKET[:2])
        request = pharmacy_settle_msg.Input(druginfo=druginfo(person, few), drugdetail=few)
        msgid = await pos.msgids.next()
        body = pos.envelope(msgid, request, region)
        assert (await pos.post(body))[0] == 200  # its answer "lost"
        lost = OutcomeUnknown(pharmacy_settle_msg.INFNO, msgid, body, TimeoutError())
        again = await pos.resend(lost, pharmacy_settle_msg.Output)
        assert (await pos.reverse(lost)).data.rslt == "reversed"
    return info, undone.setlinfo, again.setlinfo


async def reinstate_traffic(d: Deployment) -> setl.SetlInfo:
    """A 2102 whose 2103's answer was lost: the 2601 puts the purchase back."""
    person = d.person(employee=True)
    region = person.insuplc_admdvs
    lines = drugs(BASKET[:2])
    async with d.client(d.pharmacy()) as pos:
        await pos.sign_in()
        info = (await pos.pharmacy_settle(region, druginfo(person, lines), lines)).setlinfo
        cancel = pharmacy_cancel_msg.Input(
            data=pharmacy_cancel_msg.Data(
                setl_id=info.setl_id or "", mdtrt_id=info.mdtrt_id, psn_no=person.psn_no
            )
        )
        msgid = await pos.msgids.next()
        body = pos.envelope(msgid, cancel, region)
        assert (await pos.post(body))[0] == 200  # its answer "lost"
        lost = OutcomeUnknown(pharmacy_cancel_msg.INFNO, msgid, body, TimeoutError())
        assert (await pos.reverse(lost)).data.rslt == "reversed"
    return info


async def reversal_traffic(d: Deployment) -> setl.SetlInfo:
    """A 2207 whose answer was lost, resent twice (the second a replay for sure; the
    first too if the original had arrived), reversed, reversed again."""
    async with d.client() as c:
        await c.sign_in()
        lost, _, _ = await lost_settlement(d, c)
        settled = await c.resend(lost, setl.Output)
        assert await c.resend(lost, setl.Output) == settled
        assert (await c.reverse(lost)).data.rslt == "reversed"
        assert (await c.reverse(lost)).data.rslt == "already_reversed"
    return settled.setlinfo


def assert_money(
    before: dict[str, list[Sample]],
    after: dict[str, list[Sample]],
    flow: str,
    kind: str,
    *infos: setl.SetlInfo,
) -> None:
    """The settlement family moved by exactly the answers' amounts (a cancellation's
    answer carries them negated)."""
    expected = {
        "fund": sum(abs(fen(i.fund_pay_sumamt)) for i in infos),
        "account": sum(abs(fen(i.acct_pay)) for i in infos),
        "cash": sum(abs(fen(i.psn_cash_pay)) for i in infos),
    }
    for fund, fen_ in expected.items():
        got = delta(
            before, after, "yikatong_settlement_amount_fen_total", flow=flow, fund=fund, kind=kind
        )
        assert got == fen_, (flow, kind, fund)


async def test_metrics_after_real_traffic_pass_promtool_and_count_what_happened(
    deployment: Deployment, his: Client
) -> None:
    """Settlements, cancellations and reversals of both flows, a refusal, replays, an
    e-card identification and an odd HTTP method: promtool finds nothing to say, and
    each family moved by exactly what happened."""
    tool = prometheus_tool("promtool")
    before = samples(scrape(deployment))
    out, undone = await outpatient_traffic(deployment, his)
    bought, returned, reversed_purchase = await pharmacy_traffic(deployment)
    reversed_ = await reversal_traffic(deployment)
    reinstated = await reinstate_traffic(deployment)
    issued = await platform_from_env(hsm_env(deployment.engine.log_path.parent)).issue(
        deployment.person()
    )
    await his.person_info_by_ecard(issued.token_id, issued.qr)
    assert send_method(deployment, "PROPFIND") == 405
    text = scrape(deployment)
    assert check_metrics(tool, text) == (0, "", "")
    after = samples(text)

    # The reversed 2207 was settled too before its reversal moved it back.
    assert_money(before, after, "outpatient", "settle", out.setlinfo, reversed_)
    assert_money(before, after, "outpatient", "cancel", undone.setlinfo)
    assert_money(before, after, "pharmacy", "settle", bought, reversed_purchase, reinstated)
    assert_money(before, after, "pharmacy", "cancel", returned, reinstated)
    assert_money(before, after, "outpatient", "reversal", reversed_)
    assert_money(before, after, "pharmacy", "reversal", reversed_purchase)
    assert_money(before, after, "pharmacy", "reinstate", reinstated)
    assert_money(before, after, "outpatient", "reinstate")
    reversals = {
        (oinfno, result): delta(
            before, after, "yikatong_reversals_total", oinfno=oinfno, result=result
        )
        for oinfno in ("2207", "2102", "2103")
        for result in m.REVERSAL_RESULTS
    }
    assert {k: v for k, v in reversals.items() if v} == {
        ("2207", "reversed"): 1,
        ("2207", "already_reversed"): 1,
        ("2102", "reversed"): 1,
        ("2103", "reversed"): 1,
    }
    assert delta(before, after, "yikatong_idempotent_replays_total", infno="2207") >= 1
    assert delta(before, after, "yikatong_idempotent_replays_total", infno="2102") == 1
    refused = delta(
        before, after, "yikatong_tx_refusals_total", infno="2207", result="visit_already_settled"
    )
    assert refused == 1
    assert delta(before, after, "yikatong_card_auth_total", method="ecard", result="ok") == 1
    assert delta(before, after, "yikatong_db_pool_acquire_duration_seconds_count") > 0
    assert_families_present(after)
    assert_labels_bounded(after)


def assert_families_present(families: dict[str, list[Sample]]) -> None:
    """The issue's contract: each family is exported with at least one sample."""
    for family in (
        "yikatong_http_requests",
        "yikatong_http_request_duration_seconds",
        "yikatong_http_requests_in_flight",
        "yikatong_db_up",
        "yikatong_db_probe_duration_seconds",
        "yikatong_tx",
        "yikatong_tx_duration_seconds",
        "yikatong_tx_db_round_trips",
        "yikatong_tx_refusals",
        "yikatong_settlement_amount_fen",
        "yikatong_reversals",
        "yikatong_idempotent_replays",
        "yikatong_card_auth",
        "yikatong_hsm_op_duration_seconds",
        "yikatong_hsm_op_errors",
        "yikatong_db_pool_connections",
        "yikatong_db_pool_connections_max",
        "yikatong_db_pool_acquire_duration_seconds",
        "yikatong_db_pool_acquire_timeouts",
        "yikatong_ledger_unsealed_entries",
        "yikatong_ledger_seal_lag_seconds",
        "yikatong_ledger_last_seal_timestamp_seconds",
        "yikatong_build_info",
    ):
        assert families.get(family), f"{family}: no samples"
    assert "yikatong_settled_fen" not in families  # replaced by settlement_amount_fen
    ops = {labels["op"] for _, labels, _ in families["yikatong_hsm_op_errors"]}
    assert "verify_terminal_mac" in ops


def assert_labels_bounded(families: dict[str, list[Sample]]) -> None:
    """Every label value of the families with closed sets is one of the set's."""
    closed: dict[str, dict[str, Callable[[str], bool]]] = {
        "yikatong_http_requests": {"method": lambda v: v in m.HTTP_METHODS or v == m.OTHER},
        "yikatong_settlement_amount_fen": {
            "flow": lambda v: v in m.FLOWS,
            "fund": lambda v: v in m.FUNDS,
            "kind": lambda v: v in m.MONEY_KINDS,
        },
        "yikatong_reversals": {
            "oinfno": lambda v: v in m.REVERSAL_OINFNOS or v == m.OTHER,
            "result": lambda v: v in m.REVERSAL_RESULTS,
        },
        "yikatong_card_auth": {
            "method": lambda v: v in m.CARD_AUTH_METHODS,
            "result": lambda v: v in ResultCode.__members__,
        },
        "yikatong_tx_refusals": {"result": lambda v: v in ResultCode.__members__},
        "yikatong_hsm_op_errors": {
            "op": lambda v: v in HSM_OPS,
            "kind": lambda v: v in m.HSM_ERROR_KINDS,
        },
    }
    for family, rules in closed.items():
        for _, labels, _ in families[family]:
            for label, ok in rules.items():
                assert ok(labels[label]), (family, label, labels[label])
    methods = {labels["method"] for _, labels, _ in families["yikatong_http_requests"]}
    assert "other" in methods and "PROPFIND" not in methods


async def test_ledger_gauges_follow_a_held_back_seal_horizon(
    deployment: Deployment, his: Client
) -> None:
    """A transaction that stays open holds back the horizon below which the sealer
    may seal (migration 0004): entries committed after it wait, and the gauges say
    so; once it ends they are sealed and the gauges fall back to 0."""

    def ledger() -> tuple[float, float, float]:
        families = samples(scrape(deployment))
        return (
            value(families, "yikatong_ledger_unsealed_entries"),
            value(families, "yikatong_ledger_seal_lag_seconds"),
            value(families, "yikatong_ledger_last_seal_timestamp_seconds"),
        )

    async def until(cond: Callable[[tuple[float, float, float]], bool]) -> None:
        deadline = time.monotonic() + 30  # a few seal intervals (ledger.seal_interval_s: 5 s)
        while not cond(ledger()):
            assert time.monotonic() < deadline, f"ledger gauges stuck at {ledger()}"
            await asyncio.sleep(0.2)

    holder = await asyncpg.connect(deployment.dsn)
    try:
        await holder.execute("BEGIN")
        await holder.fetchval("SELECT pg_current_xact_id()")  # an xid: the horizon stops here
        visit = await open_visit(his, deployment.person(), [("TJIA0001", "50.00", "1")])
        await his.settle(visit.region, visit.settle_data())
        sealed_at = ledger()[2]
        await until(lambda g: g[0] >= 1 and g[1] > 0 and g[2] > sealed_at)
        await holder.execute("ROLLBACK")
    finally:
        await holder.close()
    await until(lambda g: g[0] == 0 and g[1] == 0)
