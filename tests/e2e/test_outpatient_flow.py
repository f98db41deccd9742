"""The outpatient flow end to end through HTTP with the client SDK, as a HIS uses it:
answers checked to the fen, idempotent repeats, refusals with their documented result
codes, and a ledger that balances after every step."""

from __future__ import annotations

import asyncio
import decimal

import pytest

from terminals.client import BusinessError, Client, yuan
from terminals.messages.outpatient import cancel as cancel_msg
from terminals.messages.outpatient import fees_cancel as fees_cancel_msg
from terminals.messages.outpatient import register as register_msg
from terminals.messages.outpatient import settle as settle_msg
from terminals.messages.outpatient import unregister as unregister_msg
from terminals.results import ResultCode
from tests.e2e.conftest import Deployment
from tests.e2e.helpers import Visit, assert_identities, fen, open_visit

pytestmark = pytest.mark.slow

KNOWN_VISIT = [
    ("TJIA0001", "100.00", "2"),  # 甲: 200.00 in scope
    ("TYI10001", "100.00", "1"),  # 乙 10%: 10.00 first self-paid, 90.00 in scope
    ("TBING001", "50.00", "1"),  # 丙: 50.00 wholly self-paid
    ("TCEIL001", "1500.00", "1"),  # ceiling 1000.00: 500.00 over the limit
]


async def postings_count(d: Deployment) -> object:
    return await d.fetchval("SELECT count(*) FROM postings")


def cancellation(visit: Visit, setl_id: str | None) -> cancel_msg.Data:
    return cancel_msg.Data(
        setl_id=setl_id or "", mdtrt_id=visit.mdtrt_id, psn_no=visit.person.psn_no
    )


async def test_full_flow_settles_to_the_fen_and_cancel_restores_everything(
    deployment: Deployment, his: Client
) -> None:
    person = deployment.person(employee=True)
    balance_before = person.acct_balance_fen
    visit = await open_visit(his, person, KNOWN_VISIT)
    assert visit.total == decimal.Decimal("1850.00")

    pre = await his.pre_settle(visit.region, visit.settle_data())
    out = await his.settle(visit.region, visit.settle_data())
    info = out.setlinfo
    assert_identities(info)
    assert info.setl_id and pre.setlinfo.setl_id is None
    # Pre-settlement predicted exactly what settlement posted.
    assert pre.setlinfo.fund_pay_sumamt == info.fund_pay_sumamt
    assert fen(info.fulamt_ownpay_amt) == 5000
    assert fen(info.overlmt_selfpay) == 50000
    assert fen(info.preselfpay_amt) == 1000
    assert fen(info.inscp_scp_amt) == 129000
    deductible, ratio = (15000, 7000) if person.retired else (20000, 6000)
    assert fen(info.act_pay_dedc) == deductible
    hifp = (129000 - deductible) * ratio // 10000
    assert fen(info.hifp_pay) == hifp
    psn_part = 185000 - hifp
    acct = min(balance_before, psn_part)
    assert fen(info.acct_pay) == acct
    assert fen(info.psn_cash_pay) == psn_part - acct
    assert fen(info.balc) == balance_before - acct
    assert info.medins_setl_id  # the settling request's msgid
    report = await deployment.ledger()
    assert report.balanced, report.violations

    cancel = await his.cancel_settlement(visit.region, cancellation(visit, info.setl_id))
    assert cancel.setlinfo.fund_pay_sumamt == -info.fund_pay_sumamt
    assert fen(cancel.setlinfo.balc) == balance_before
    assert (
        await deployment.fetchval(
            "SELECT acct_balance_fen FROM persons WHERE psn_no = $1", person.psn_no
        )
        == balance_before
    )
    assert (
        await deployment.fetchval(
            "SELECT fund_paid_fen FROM person_accumulators WHERE psn_no = $1", person.psn_no
        )
        == 0
    )
    report = await deployment.ledger()
    assert report.balanced, report.violations


async def test_identical_repeat_returns_the_stored_answer_and_posts_nothing(
    deployment: Deployment,
) -> None:
    async with deployment.client() as c:
        await c.sign_in()
        visit = await open_visit(c, deployment.person(), KNOWN_VISIT[:2])
        msgid = await c.msgids.next()
        body = c.envelope(msgid, settle_msg.Input(data=visit.settle_data()), visit.region)
        first = await c.post(body)
        before = await postings_count(deployment)
        second = await c.post(body)  # new nonce and timestamp, same msgid and body
        assert first == second
        assert await postings_count(deployment) == before

        changed = c.envelope(
            msgid, settle_msg.Input(data=visit.settle_data(acct_used_flag="0")), visit.region
        )
        status, raw = await c.post(changed)
        assert status == 200
        assert b'"yk_result":"msgid_reused_with_different_body"' in raw
        assert await postings_count(deployment) == before
    assert (await deployment.ledger()).balanced


async def test_cancel_twice_is_refused_and_ledger_unchanged(deployment: Deployment) -> None:
    async with deployment.client() as c:
        await c.sign_in()
        person = deployment.person()
        visit = await open_visit(c, person, KNOWN_VISIT[:1])
        out = await c.settle(visit.region, visit.settle_data())
        await c.cancel_settlement(visit.region, cancellation(visit, out.setlinfo.setl_id))
        before = await postings_count(deployment)
        with pytest.raises(BusinessError) as err:
            await c.cancel_settlement(visit.region, cancellation(visit, out.setlinfo.setl_id))
        assert err.value.code is ResultCode.settlement_already_cancelled
        assert "setl_id" in err.value.err_msg
        assert await postings_count(deployment) == before
    assert (await deployment.ledger()).balanced


async def test_settle_after_cancel(deployment: Deployment) -> None:
    """After 2208 the details are free again and may be settled anew; after 2205 has
    removed them there is nothing left to settle; after 2202 the visit is closed."""
    async with deployment.client() as c:
        await c.sign_in()
        person = deployment.person()
        visit = await open_visit(c, person, KNOWN_VISIT[:2])
        first = await c.settle(visit.region, visit.settle_data())
        await c.cancel_settlement(visit.region, cancellation(visit, first.setlinfo.setl_id))
        again = await c.settle(visit.region, visit.settle_data())
        assert again.setlinfo.setl_id != first.setlinfo.setl_id
        assert again.setlinfo.medfee_sumamt == first.setlinfo.medfee_sumamt
        with pytest.raises(BusinessError) as err:
            await c.settle(visit.region, visit.settle_data())
        assert err.value.code is ResultCode.visit_already_settled

        await c.cancel_settlement(visit.region, cancellation(visit, again.setlinfo.setl_id))
        every = fees_cancel_msg.Data(
            mdtrt_id=visit.mdtrt_id, chrg_bchno=fees_cancel_msg.ALL_BATCHES, psn_no=person.psn_no
        )
        await c.cancel_fees(visit.region, every)
        with pytest.raises(BusinessError) as err:
            await c.settle(visit.region, visit.settle_data())
        assert err.value.code is ResultCode.fee_details_none_unsettled
        unreg = unregister_msg.Data(
            psn_no=person.psn_no, mdtrt_id=visit.mdtrt_id, ipt_otp_no=visit.ipt_otp_no
        )
        await c.cancel_registration(visit.region, unreg)
        with pytest.raises(BusinessError) as err:
            await c.settle(visit.region, visit.settle_data())
        assert err.value.code is ResultCode.visit_cancelled
    assert (await deployment.ledger()).balanced


async def test_unknown_person_is_refused(deployment: Deployment, his: Client) -> None:
    with pytest.raises(BusinessError) as err:
        await his.person_info_by_id_number("510104199001010000")
    assert err.value.code is ResultCode.person_not_found
    with pytest.raises(BusinessError) as err:
        await his.register(
            "510100",
            register_msg.Data(
                psn_no="510100999999999999",
                insutype="310",
                begntime="2026-11-29 09:00:00",
                mdtrt_cert_type="02",
                mdtrt_cert_no="510104199001010000",
                ipt_otp_no="NOBODY01",
            ),
        )
    assert err.value.code is ResultCode.person_not_found
    assert err.value.err_msg.startswith("input.data.psn_no")


async def test_medfee_total_must_match_the_details(deployment: Deployment) -> None:
    async with deployment.client() as c:
        await c.sign_in()
        visit = await open_visit(c, deployment.person(), KNOWN_VISIT[:1])
        before = await postings_count(deployment)
        with pytest.raises(BusinessError) as err:
            await c.settle(visit.region, visit.settle_data(medfee_sumamt=yuan("199.99")))
        assert err.value.code is ResultCode.medfee_sumamt_mismatch
        assert err.value.err_msg.startswith("input.data.medfee_sumamt")
        assert await postings_count(deployment) == before


async def test_fifty_concurrent_settlements_never_overdraw_or_pass_the_cap(
    deployment: Deployment,
) -> None:
    """One employee, 50 visits at several hospitals settled at once: the personal
    account never goes below zero and the pooled fund never pays past the annual
    outpatient limit, whatever the interleaving."""
    person = deployment.person(employee=True)
    hospitals = [deployment.hospital(i) for i in range(4)]
    clients = [deployment.client(h) for h in hospitals]
    for c in clients:
        await c.__aenter__()
        await c.sign_in()
    try:
        visits = [
            await open_visit(clients[i % 4], person, [("TJIA0001", "300.00", "1")])
            for i in range(50)
        ]
        results = await asyncio.gather(
            *(clients[i % 4].settle(v.region, v.settle_data()) for i, v in enumerate(visits)),
            return_exceptions=True,
        )
    finally:
        for c in clients:
            await c.close()
    settled = [r for r in results if not isinstance(r, BaseException)]
    assert len(settled) == 50, [r for r in results if isinstance(r, BaseException)][:3]
    acct_total = sum(fen(r.setlinfo.acct_pay) for r in settled)
    fund_total = sum(fen(r.setlinfo.hifp_pay) for r in settled)
    assert acct_total <= person.acct_balance_fen
    limit = 250000 if person.retired else 200000
    assert fund_total <= limit
    assert fund_total == limit, "15 000 yuan of care reaches the outpatient limit"
    balance = await deployment.fetchval(
        "SELECT acct_balance_fen FROM persons WHERE psn_no = $1", person.psn_no
    )
    assert balance == person.acct_balance_fen - acct_total >= 0
    report = await deployment.ledger()
    assert report.balanced, report.violations
