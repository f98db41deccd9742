"""Pharmacy purchases over HTTP (2101 pre-settle, 2102 settle, 2103 cancel) through a
real engine process and its database: the basket inside the request, one request one
durable settlement, the per-item split in `detlcutinfo`, idempotent repeats, the
cancellation that restores every account, each refusal changing nothing, and a card
purchase carrying its card proof. Concurrency: one person buying at several pharmacies
at once never overdraws the account or passes the annual limit."""

from __future__ import annotations

import asyncio
import decimal
from collections.abc import AsyncIterator

import msgspec
import pytest

from simulators.population import Person
from terminals.client import BusinessError, Client, OutcomeUnknown, yuan
from terminals.messages.pharmacy import cancel as pharmacy_cancel_msg
from terminals.messages.pharmacy import presettle as pharmacy_presettle_msg
from terminals.messages.pharmacy import settle as pharmacy_settle_msg
from terminals.results import ResultCode
from tests.e2e.cards import Cards, deployment_cards, present
from tests.e2e.conftest import Deployment
from tests.e2e.helpers import NOW, assert_identities, fen, open_visit
from tests.e2e.test_outpatient_flow import KNOWN_VISIT

pytestmark = pytest.mark.slow

# (catalog code, unit price, quantity): 甲 200.00, 乙10% 100.00, 丙 50.00, a capped item
# at 1 500.00 (ceiling 1 000.00) and an unlisted one at 15.00 — 1 865.00 in all.
BASKET = [
    ("TJIA0001", "100.00", "2"),
    ("TYI10001", "100.00", "1"),
    ("TBING001", "50.00", "1"),
    ("TCEIL001", "1500.00", "1"),
    ("NOTLISTED", "15.00", "1"),
]


def drugs(basket: list[tuple[str, str, str]]) -> list[pharmacy_presettle_msg.DrugDetail]:
    out = []
    for n, (code, pric, cnt) in enumerate(basket, start=1):
        p, c = decimal.Decimal(pric), decimal.Decimal(cnt)
        out.append(
            pharmacy_presettle_msg.DrugDetail(
                feedetl_sn=f"{n:04d}",
                fee_ocur_time=NOW,
                med_list_codg=code,
                medins_list_codg=f"L{code}",
                det_item_fee_sumamt=yuan(p * c),
                cnt=c,
                pric=p,
            )
        )
    return out


def druginfo(
    person: Person, lines: list[pharmacy_presettle_msg.DrugDetail], **changes: object
) -> pharmacy_settle_msg.DrugInfo:
    """By ID number, the basket's total (or what `changes` say)."""
    total = sum((x.det_item_fee_sumamt for x in lines), decimal.Decimal(0))
    info = pharmacy_settle_msg.DrugInfo(
        psn_no=person.psn_no,
        mdtrt_cert_type="02",
        mdtrt_cert_no=person.certno,
        begntime=NOW,
        medfee_sumamt=yuan(total),
        insutype=person.insutype,
    )
    return msgspec.structs.replace(info, **changes)


async def money_state(d: Deployment) -> tuple[object, ...]:
    return (
        await d.fetchval("SELECT count(*) FROM tx_log"),
        await d.fetchval("SELECT count(*) FROM postings"),
        await d.fetchval("SELECT count(*) FROM visits"),
        await d.fetchval("SELECT sum(acct_balance_fen) FROM persons"),
    )


async def refused(call: object) -> ResultCode:
    with pytest.raises(BusinessError) as err:
        await call  # type: ignore[misc]
    return err.value.code


@pytest.fixture
async def pos(deployment: Deployment) -> AsyncIterator[Client]:
    """A signed-in POS of the first pharmacy."""
    async with deployment.client(deployment.pharmacy()) as client:
        await client.sign_in()
        yield client


async def test_a_basket_is_settled_in_one_request_and_cancelled_to_the_fen(
    deployment: Deployment, pos: Client
) -> None:
    person = deployment.person(employee=True)
    region = person.insuplc_admdvs
    lines = drugs(BASKET)
    info = druginfo(person, lines)
    trial = await pos.pharmacy_pre_settle(region, info, lines)
    assert trial.setlinfo.setl_id is None
    out = await pos.pharmacy_settle(region, info, lines)
    assert_identities(out.setlinfo)
    assert out.setlinfo.setl_id and out.setlinfo.mdtrt_id and out.setlinfo.med_type == "41"
    assert out.setlinfo.clr_type == "41"
    for field in ("medfee_sumamt", "hifp_pay", "acct_pay", "psn_cash_pay", "inscp_scp_amt"):
        assert getattr(trial.setlinfo, field) == getattr(out.setlinfo, field), field
    cut = {x.feedetl_sn: x for x in out.detlcutinfo}
    assert len(cut) == 5 and cut == {x.feedetl_sn: x for x in trial.detlcutinfo}
    assert (cut["0001"].inscp_scp_amt, cut["0002"].preselfpay_amt) == (yuan(200), yuan(10))
    assert (cut["0003"].fulamt_ownpay_amt, cut["0004"].overlmt_amt) == (yuan(50), yuan(500))
    assert cut["0005"].fulamt_ownpay_amt == yuan(15)
    assert out.setlinfo.medfee_sumamt == yuan("1865.00")
    assert out.setlinfo.inscp_scp_amt == yuan("1290.00")  # 200 + 90 + 1 000
    stored = await deployment.fetchval(
        "SELECT count(*) FROM fee_details WHERE mdtrt_id = $1 AND setl_id = $2",
        out.setlinfo.mdtrt_id,
        out.setlinfo.setl_id,
    )
    assert stored == 5
    balance = await deployment.fetchval(
        "SELECT acct_balance_fen FROM persons WHERE psn_no = $1", person.psn_no
    )
    assert balance == person.acct_balance_fen - fen(out.setlinfo.acct_pay)

    data = pharmacy_cancel_msg.Data(
        setl_id=out.setlinfo.setl_id, mdtrt_id=out.setlinfo.mdtrt_id, psn_no=person.psn_no
    )
    undone = await pos.pharmacy_cancel(region, data)
    assert undone.setlinfo.medfee_sumamt == -out.setlinfo.medfee_sumamt
    assert undone.setlinfo.balc == yuan(decimal.Decimal(person.acct_balance_fen) / 100)
    assert (
        await refused(pos.pharmacy_cancel(region, data)) is ResultCode.settlement_already_cancelled
    )
    report = await deployment.ledger()
    assert report.balanced, report.violations


async def test_an_identical_repeat_gets_the_stored_answer_and_buys_nothing(
    deployment: Deployment, pos: Client
) -> None:
    person = deployment.person(employee=True)
    lines = drugs(BASKET[:2])
    request = pharmacy_settle_msg.Input(druginfo=druginfo(person, lines), drugdetail=lines)
    msgid = await pos.msgids.next()
    body = pos.envelope(msgid, request, person.insuplc_admdvs)
    first = await pos.post(body)
    assert first[0] == 200 and b'"infcode":0' in first[1]
    before = await money_state(deployment)
    assert await pos.post(body) == first  # new nonce and timestamp, same msgid and body
    assert await money_state(deployment) == before


async def test_every_refusal_changes_nothing(deployment: Deployment, pos: Client) -> None:
    person = deployment.person(employee=True)
    region = person.insuplc_admdvs
    lines = drugs(BASKET)
    wrong_line = [*lines[:4], msgspec.structs.replace(lines[4], det_item_fee_sumamt=yuan(16))]
    twice = [*lines[:4], lines[0]]
    cases = [
        (druginfo(person, lines, medfee_sumamt=yuan(1)), lines, ResultCode.medfee_sumamt_mismatch),
        (druginfo(person, lines), wrong_line, ResultCode.fee_detail_amount_mismatch),
        (druginfo(person, lines), twice, ResultCode.fee_detail_duplicate),
        (druginfo(person, lines, psn_no="NOBODY"), lines, ResultCode.person_not_found),
        (druginfo(person, lines, mdtrt_cert_type="03"), lines, ResultCode.card_proof_missing),
        (
            druginfo(person, lines, mdtrt_cert_type="03", yk_cred_ref="0f" * 16),
            lines,
            ResultCode.card_proof_unknown,
        ),
    ]
    before = await money_state(deployment)
    for info, detail, want in cases:
        assert await refused(pos.pharmacy_settle(region, info, detail)) is want, want
        assert await money_state(deployment) == before, want
    nothing = pharmacy_cancel_msg.Data(setl_id="NOSUCH", mdtrt_id="NOSUCH", psn_no=person.psn_no)
    assert await refused(pos.pharmacy_cancel(region, nothing)) is ResultCode.visit_not_found


async def test_2103_cancels_only_pharmacy_settlements(deployment: Deployment) -> None:
    """A hospital's outpatient settlement is not a pharmacy's to cancel with 2103 (2208
    cancels both)."""
    person = deployment.person(employee=True)
    async with deployment.client() as his:
        await his.sign_in()
        visit = await open_visit(his, person, KNOWN_VISIT[:1])
        out = await his.settle(visit.region, visit.settle_data())
        assert out.setlinfo.setl_id is not None
        data = pharmacy_cancel_msg.Data(
            setl_id=out.setlinfo.setl_id, mdtrt_id=visit.mdtrt_id, psn_no=person.psn_no
        )
        before = await money_state(deployment)
        got = await refused(his.pharmacy_cancel(visit.region, data))
        assert got is ResultCode.settlement_not_found
        assert await money_state(deployment) == before


async def test_a_card_purchase_carries_the_card_proof_read_at_this_pharmacy(
    deployment: Deployment, pos: Client
) -> None:
    cards: Cards = deployment_cards(deployment)
    card, person, keys = cards.good(3)
    answer = await present(pos, card, person, keys)
    assert answer.yk_card_proof is not None
    lines = drugs(BASKET[:2])
    info = druginfo(
        person,
        lines,
        mdtrt_cert_type="03",
        mdtrt_cert_no=card.card_no,
        yk_cred_ref=answer.yk_card_proof.cred_ref,
    )
    out = await pos.pharmacy_settle(person.insuplc_admdvs, info, lines)
    assert out.setlinfo.psn_no == person.psn_no and out.setlinfo.mdtrt_cert_type == "03"


async def test_one_person_at_two_pharmacies_and_a_hospital_at_once_never_overdraws(
    deployment: Deployment,
) -> None:
    """30 purchases at two pharmacies and 10 outpatient settlements at a hospital, all
    at once, for one employee: the account never goes below zero and the pooled fund
    never pays past the annual outpatient limit the two benefits share."""
    person = deployment.person(employee=True)
    region = person.insuplc_admdvs
    shops = [deployment.client(deployment.pharmacy(i)) for i in range(2)]
    his = deployment.client()
    for c in (*shops, his):
        await c.__aenter__()
        await c.sign_in()
    lines = drugs([("TJIA0001", "300.00", "1")])
    try:
        visits = [await open_visit(his, person, [("TJIA0001", "300.00", "1")]) for _ in range(10)]
        results = await asyncio.gather(
            *(
                shops[i % 2].pharmacy_settle(region, druginfo(person, lines), lines)
                for i in range(30)
            ),
            *(his.settle(v.region, v.settle_data()) for v in visits),
            return_exceptions=True,
        )
    finally:
        for c in (*shops, his):
            await c.close()
    settled = [r for r in results if not isinstance(r, BaseException)]
    assert len(settled) == 40, [r for r in results if isinstance(r, BaseException)][:3]
    acct_total = sum(fen(r.setlinfo.acct_pay) for r in settled)
    assert acct_total <= person.acct_balance_fen
    fund_total = sum(fen(r.setlinfo.hifp_pay) for r in settled)
    assert fund_total <= (250_000 if person.retired else 200_000)
    balance = await deployment.fetchval(
        "SELECT acct_balance_fen FROM persons WHERE psn_no = $1", person.psn_no
    )
    assert balance == person.acct_balance_fen - acct_total >= 0
    paid = await deployment.fetchval(
        "SELECT outpatient_fund_paid_fen FROM person_accumulators WHERE psn_no = $1",
        person.psn_no,
    )
    assert paid == fund_total
    report = await deployment.ledger()
    assert report.balanced, report.violations


async def test_a_lost_2102_is_reversed_once_and_a_reversal_before_it_refuses_it(
    deployment: Deployment, pos: Client
) -> None:
    """The POS lost the answer of a purchase: 2601 undoes it to the fen, a second 2601
    answers already_reversed, the resend is refused; a 2601 that overtakes its 2102
    leaves a tombstone and the late 2102 is refused and buys nothing."""
    person = deployment.person(employee=True)
    region = person.insuplc_admdvs
    lines = drugs(BASKET[:2])
    request = pharmacy_settle_msg.Input(druginfo=druginfo(person, lines), drugdetail=lines)
    msgid = await pos.msgids.next()
    body = pos.envelope(msgid, request, region)
    status, _ = await pos.post(body)  # its answer "lost"
    assert status == 200
    lost = OutcomeUnknown("2102", msgid, body, TimeoutError())
    out = await pos.reverse(lost)
    assert out.data.rslt == "reversed" and out.data.setl_id
    assert (await pos.reverse(lost)).data.rslt == "already_reversed"
    with pytest.raises(BusinessError) as err:
        await pos.resend(lost, pharmacy_settle_msg.Output)
    assert err.value.code is ResultCode.msgid_reversed
    balance = await deployment.fetchval(
        "SELECT acct_balance_fen FROM persons WHERE psn_no = $1", person.psn_no
    )
    assert balance == person.acct_balance_fen

    late_msgid = await pos.msgids.next()
    late = pos.envelope(late_msgid, request, region)
    first = await pos.reverse(OutcomeUnknown("2102", late_msgid, late, TimeoutError()))
    assert (first.data.rslt, first.data.setl_id) == ("tombstoned", None)
    before = await money_state(deployment)
    status, raw = await pos.post(late)
    assert status == 200 and b'"yk_result":"msgid_reversed"' in raw
    assert await money_state(deployment) == before
    report = await deployment.ledger()
    assert report.balanced, report.violations
