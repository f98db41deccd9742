"""2601 of a cancellation (2208 outpatient, 2103 pharmacy) through the SDK: a cancel
whose answer was lost is reversed and the settlement is back exactly as it was (state,
account, accumulators, fee details, one reinstate entry repeating the settle entry),
a second reversal answers already_reversed, the cancel's resend is refused, and the
settlement can be cancelled again later; a reversal that overtakes its cancel
tombstones it; when the visit was settled anew or the account spent since, the
cancellation stands and nothing changes."""

from __future__ import annotations

import asyncpg
import pytest

from engine.ledger_check import check
from terminals.client import BusinessError, Client, OutcomeUnknown
from terminals.messages import setl
from terminals.messages.outpatient import cancel as cancel_msg
from terminals.messages.pharmacy import cancel as pharmacy_cancel_msg
from terminals.messages.pharmacy import settle as pharmacy_settle_msg
from terminals.results import ResultCode
from tests.e2e.conftest import Deployment
from tests.e2e.helpers import Visit, open_visit
from tests.e2e.test_pharmacy import BASKET, druginfo, drugs, money_state

pytestmark = pytest.mark.slow


async def lost(c: Client, infno: str, request: object, region: str) -> OutcomeUnknown:
    """Send `request` and "lose" its answer (the engine committed it)."""
    msgid = await c.msgids.next()
    body = c.envelope(msgid, request, region)  # type: ignore[arg-type]
    status, _ = await c.post(body)
    assert status == 200
    return OutcomeUnknown(infno, msgid, body, TimeoutError())


async def books_of(d: Deployment, setl_id: str, psn_no: str) -> tuple[object, ...]:
    """The settlement's state, the account, the year's accumulators, its settled details."""
    return (
        await d.fetchval("SELECT state FROM settlements WHERE setl_id = $1", setl_id),
        await d.fetchval("SELECT acct_balance_fen FROM persons WHERE psn_no = $1", psn_no),
        await d.fetchval(
            "SELECT (deductible_used_fen, outpatient_fund_paid_fen, fund_paid_fen)::text"
            " FROM person_accumulators WHERE psn_no = $1",
            psn_no,
        ),
        await d.fetchval("SELECT count(*) FROM fee_details WHERE setl_id = $1", setl_id),
    )


async def settled_visit(d: Deployment, c: Client) -> tuple[Visit, setl.Output]:
    visit = await open_visit(
        c, d.person(), [("TJIA0001", "300.00", "1"), ("TYI10001", "80.00", "1")]
    )
    return visit, await c.settle(visit.region, visit.settle_data())


def cancel_of(visit: Visit, out: setl.Output) -> cancel_msg.Input:
    return cancel_msg.Input(
        data=cancel_msg.Data(
            setl_id=out.setlinfo.setl_id or "", mdtrt_id=visit.mdtrt_id, psn_no=visit.person.psn_no
        )
    )


async def test_a_lost_2208_reversed_puts_the_settlement_back_as_it_was(
    deployment: Deployment, his: Client
) -> None:
    visit, out = await settled_visit(deployment, his)
    setl_id, psn_no = out.setlinfo.setl_id or "", visit.person.psn_no
    as_settled = await books_of(deployment, setl_id, psn_no)
    assert as_settled[0] == "settled" and as_settled[3] == 2
    cancel = await lost(his, "2208", cancel_of(visit, out), visit.region)
    assert (await books_of(deployment, setl_id, psn_no))[0] == "cancelled"

    back = await his.reverse(cancel)
    assert (back.data.rslt, back.data.oinfno, back.data.setl_id) == ("reversed", "2208", setl_id)
    assert await books_of(deployment, setl_id, psn_no) == as_settled
    kinds = await deployment.fetchval(
        "SELECT string_agg(kind, ',' ORDER BY entry_id) FROM journal_entries WHERE setl_id = $1",
        setl_id,
    )
    assert kinds == "settle,cancel,reinstate"
    again = await his.reverse(cancel)
    assert (again.data.rslt, again.data.setl_id) == ("already_reversed", setl_id)
    with pytest.raises(BusinessError) as err:
        await his.resend(cancel, setl.Output)
    assert err.value.code is ResultCode.msgid_reversed
    assert await books_of(deployment, setl_id, psn_no) == as_settled
    report = await deployment.ledger()
    assert report.balanced, report.violations

    # The patient really does cancel later: a new 2208 cancels the reinstated settlement.
    await his.cancel_settlement(visit.region, cancel_of(visit, out).data)
    assert (await books_of(deployment, setl_id, psn_no))[0] == "cancelled"
    report = await deployment.ledger()
    assert report.balanced, report.violations


async def test_a_reversal_before_its_2208_tombstones_it(
    deployment: Deployment, his: Client
) -> None:
    visit, out = await settled_visit(deployment, his)
    setl_id = out.setlinfo.setl_id or ""
    msgid = await his.msgids.next()
    body = his.envelope(msgid, cancel_of(visit, out), visit.region)
    first = await his.reverse(OutcomeUnknown("2208", msgid, body, TimeoutError()))
    assert (first.data.rslt, first.data.setl_id) == ("tombstoned", None)
    status, raw = await his.post(body)  # the 2208, late
    assert status == 200 and b'"yk_result":"msgid_reversed"' in raw
    assert (await books_of(deployment, setl_id, visit.person.psn_no))[0] == "settled"


async def test_the_cancellation_stands_when_the_visit_was_settled_again(
    deployment: Deployment, his: Client
) -> None:
    visit, out = await settled_visit(deployment, his)
    cancel = await lost(his, "2208", cancel_of(visit, out), visit.region)
    anew = await his.settle(visit.region, visit.settle_data())
    before = await money_state(deployment)
    with pytest.raises(BusinessError) as err:
        await his.reverse(cancel)
    assert err.value.code is ResultCode.reversal_cancellation_stands
    assert err.value.err_msg == (
        f"input.data.omsgid: the cancellation of setl_id {out.setlinfo.setl_id} stands:"
        f" the visit was settled again as setl_id {anew.setlinfo.setl_id}"
    )
    assert await money_state(deployment) == before


async def test_a_lost_2103_reversed_buys_the_basket_again_unless_the_account_was_spent(
    deployment: Deployment,
) -> None:
    person = deployment.person(employee=True)
    region = person.insuplc_admdvs
    lines = drugs(BASKET[:2])
    async with deployment.client(deployment.pharmacy()) as pos:
        await pos.sign_in()
        bought = await pos.pharmacy_settle(region, druginfo(person, lines), lines)
        s = bought.setlinfo
        setl_id = s.setl_id or ""
        as_bought = await books_of(deployment, setl_id, person.psn_no)
        data = pharmacy_cancel_msg.Data(setl_id=setl_id, mdtrt_id=s.mdtrt_id, psn_no=person.psn_no)
        cancel = await lost(pos, "2103", pharmacy_cancel_msg.Input(data=data), region)
        back = await pos.reverse(cancel)
        assert (back.data.rslt, back.data.setl_id) == ("reversed", setl_id)
        assert await books_of(deployment, setl_id, person.psn_no) == as_bought
        assert s.acct_pay > 0, "the example pays from the account"

        # Cancelled again (answer lost), and the refunded account spent on a basket of
        # 15 000.00 (more than any account holds: the account pays all it has).
        cancel = await lost(pos, "2103", pharmacy_cancel_msg.Input(data=data), region)
        big = drugs([("TJIA0001", "1000.00", "15")])
        spent = await pos.pharmacy_settle(region, druginfo(person, big), big)
        assert spent.setlinfo.balc == 0
        before = await money_state(deployment)
        with pytest.raises(BusinessError) as err:
            await pos.reverse(cancel)
        assert err.value.code is ResultCode.reversal_cancellation_stands
        assert "the personal account holds" in err.value.err_msg
        assert await money_state(deployment) == before
    report = await deployment.ledger()
    assert report.balanced, report.violations
    assert isinstance(bought, pharmacy_settle_msg.Output)


async def test_ledger_check_finds_a_reinstatement_that_does_not_repeat_its_settlement(
    deployment: Deployment, his: Client
) -> None:
    """Tampered inside a transaction that is rolled back: a reinstate entry that posts
    something else, and a reinstated settlement marked cancelled without a new cancel."""
    visit, out = await settled_visit(deployment, his)
    setl_id = out.setlinfo.setl_id or ""
    await his.reverse(await lost(his, "2208", cancel_of(visit, out), visit.region))
    conn = await asyncpg.connect(deployment.dsn)
    try:
        for tamper, invariant in (
            (
                "WITH e AS (INSERT INTO journal_entries (kind, insuplc_admdvs, setl_id)"
                " VALUES ('reinstate', '510100', $1) RETURNING entry_id)"
                " INSERT INTO postings (entry_id, account, amount_fen)"
                " SELECT entry_id, a, f FROM e, (VALUES ('cash:X', 1), ('oop:510100', -1)) v(a, f)",
                "each cancel entry negates its settlement's settle entry; each reinstate entry"
                " posts it again",
            ),
            (
                "UPDATE settlements SET state = 'cancelled', cancel_entry_id = ("
                " SELECT max(entry_id) FROM journal_entries WHERE setl_id = $1"
                " AND kind = 'cancel') WHERE setl_id = $1",
                "a settlement is cancelled once more than reinstated exactly when it is"
                " cancelled, by its latest cancel entry",
            ),
        ):
            tx = conn.transaction(isolation="repeatable_read")  # as check() reads
            await tx.start()
            try:
                await conn.execute(tamper, setl_id)
                report = await check(conn, timeout_s=60)
                assert invariant in {v.invariant for v in report.violations}, report.violations
            finally:
                await tx.rollback()
    finally:
        await conn.close()
    report = await deployment.ledger()
    assert report.balanced, report.violations
