"""2601 reversal through the SDK: a settlement whose answer was lost is undone once,
a reversal that overtakes its original leaves a tombstone that refuses the late
original, reversal is idempotent (also after a 2208 cancelled the settlement), a
reversal naming another person changes nothing, and the inpatient codes of the national
list are answered reversal_not_supported (2102's reversals are in test_pharmacy, those
of 2208 and 2103 in test_reversal_of_cancel)."""

from __future__ import annotations

import msgspec
import pytest

from terminals.client import BusinessError, Client, OutcomeUnknown
from terminals.messages import setl
from terminals.messages.outpatient import cancel as cancel_msg
from terminals.messages.outpatient import settle as settle_msg
from terminals.results import ResultCode
from tests.e2e.conftest import Deployment
from tests.e2e.helpers import open_visit

pytestmark = pytest.mark.slow


async def lost_settlement(d: Deployment, c: Client) -> tuple[OutcomeUnknown, str, int]:
    """A 2207 sent with a timeout too short to hear the answer."""
    person = d.person()
    visit = await open_visit(c, person, [("TJIA0001", "300.00", "1")])
    hasty = Client(d.engine.url, d.credentials(d.hospital()), timeout_s=0.0005)
    hasty.sign_no = c.sign_no
    async with hasty:
        with pytest.raises(OutcomeUnknown) as lost:
            await hasty.settle(visit.region, visit.settle_data())
    return lost.value, visit.mdtrt_id, person.acct_balance_fen


async def test_lost_settlement_is_reversed_once_and_its_resend_refused(
    deployment: Deployment,
) -> None:
    async with deployment.client() as c:
        await c.sign_in()
        lost, mdtrt_id, balance = await lost_settlement(deployment, c)
        # Make sure the original has arrived and committed before reversing it.
        settled = await c.resend(lost, setl.Output)
        out = await c.reverse(lost)
        assert (out.data.rslt, out.data.setl_id) == ("reversed", settled.setlinfo.setl_id)
        again = await c.reverse(lost)
        assert again.data.rslt == "already_reversed"
        with pytest.raises(BusinessError) as err:
            await c.resend(lost, setl.Output)
        assert err.value.code is ResultCode.msgid_reversed
    assert (
        await deployment.fetchval("SELECT state FROM settlements WHERE mdtrt_id = $1", mdtrt_id)
        == "cancelled"
    )
    assert (
        await deployment.fetchval(
            "SELECT acct_balance_fen FROM persons WHERE psn_no = $1",
            settled.setlinfo.psn_no,
        )
        == balance
    )
    assert (await deployment.ledger()).balanced


async def test_reversal_before_the_original_arrives_refuses_the_late_original(
    deployment: Deployment,
) -> None:
    async with deployment.client() as c:
        await c.sign_in()
        person = deployment.person()
        visit = await open_visit(c, person, [("TJIA0001", "100.00", "1")])
        msgid = await c.msgids.next()
        body = c.envelope(msgid, settle_msg.Input(data=visit.settle_data()), visit.region)
        never_sent = OutcomeUnknown("2207", msgid, body, TimeoutError())
        out = await c.reverse(never_sent)
        assert (out.data.rslt, out.data.setl_id) == ("tombstoned", None)
        status, raw = await c.post(body)  # the original, late
        assert status == 200 and b'"yk_result":"msgid_reversed"' in raw
        assert (
            await deployment.fetchval(
                "SELECT count(*) FROM settlements WHERE mdtrt_id = $1", visit.mdtrt_id
            )
            == 0
        )
        assert (await c.reverse(never_sent)).data.rslt == "already_reversed"
    assert (await deployment.ledger()).balanced


async def test_inpatient_codes_are_not_reversible_yet(deployment: Deployment, his: Client) -> None:
    fake = OutcomeUnknown(
        "2304",
        "H51010000000202611290000000001",
        b'{"insuplc_admdvs":"510100","input":{"data":{"psn_no":"x"}}}',
        TimeoutError(),
    )
    with pytest.raises(BusinessError) as err:
        await his.reverse(fake)
    assert err.value.code is ResultCode.reversal_not_supported
    assert err.value.err_msg.startswith("input.data.oinfno")
    fake = OutcomeUnknown("1101", fake.msgid, fake.body, TimeoutError())
    with pytest.raises(BusinessError) as err:
        await his.reverse(fake)
    assert err.value.code is ResultCode.field_invalid


async def test_reversal_after_a_2208_refunds_nothing_twice(deployment: Deployment) -> None:
    """A settlement cancelled by 2208 and then reversed by 2601: the reversal answers
    already_reversed and marks the msgid (an identical resend is refused), and the
    account is refunded once."""
    async with deployment.client() as c:
        await c.sign_in()
        lost, mdtrt_id, balance = await lost_settlement(deployment, c)
        settled = await c.resend(lost, setl.Output)
        info = settled.setlinfo
        await c.cancel_settlement(
            msgspec.json.decode(lost.body)["insuplc_admdvs"],
            cancel_msg.Data(setl_id=info.setl_id or "", mdtrt_id=mdtrt_id, psn_no=info.psn_no),
        )
        out = await c.reverse(lost)
        assert (out.data.rslt, out.data.setl_id) == ("already_reversed", info.setl_id)
        with pytest.raises(BusinessError) as err:
            await c.resend(lost, setl.Output)
        assert err.value.code is ResultCode.msgid_reversed
    assert (
        await deployment.fetchval(
            "SELECT acct_balance_fen FROM persons WHERE psn_no = $1", info.psn_no
        )
        == balance
    )
    assert (
        await deployment.fetchval(
            "SELECT count(*) FROM journal_entries WHERE setl_id = $1 AND kind = 'cancel'",
            info.setl_id,
        )
        == 1
    )
    assert (await deployment.ledger()).balanced


async def test_reversal_naming_another_person_is_refused_and_changes_nothing(
    deployment: Deployment,
) -> None:
    async with deployment.client() as c:
        await c.sign_in()
        lost, mdtrt_id, _ = await lost_settlement(deployment, c)
        await c.resend(lost, setl.Output)
        # The SDK names the person from the original's body: name another one.
        body = lost.body.replace(b'"psn_no":"', b'"psn_no":"X', 1)
        assert body != lost.body
        with pytest.raises(BusinessError) as err:
            await c.reverse(OutcomeUnknown(lost.infno, lost.msgid, body, TimeoutError()))
        assert err.value.code is ResultCode.reversal_person_mismatch
        assert err.value.err_msg.startswith("input.data.psn_no")
    assert (
        await deployment.fetchval("SELECT state FROM settlements WHERE mdtrt_id = $1", mdtrt_id)
        == "settled"
    )
