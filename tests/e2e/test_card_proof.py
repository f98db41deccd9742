"""Card proof bound to the money, end to end through a real engine process, its
database and its soft HSM: a 1101 by card or e-card answers `yk_card_proof`, and a 2201
or 2207 by card (03) or e-card (01) carries its `cred_ref`. Without it, with a forged
one, another person's, another terminal's, a stale one or one whose card was revoked
since, the request is refused with its own 133x code and nothing changes: no tx_log
row, no posting, the same balance, the visit still unsettled.

The stale reference is aged in the database and the revocation is written there (the
engine's clock cannot be injected from outside, and the issuer's revocation feed is not
part of this engine: `cards.status` is what it reads)."""

from __future__ import annotations

import pytest

from simulators.ecard import platform_from_env
from simulators.population import Card, Person
from terminals.client import BusinessError, Client
from terminals.messages.card import person_info as person_info_msg
from terminals.messages.outpatient import settle as settle_msg
from terminals.results import ResultCode
from tests.e2e.cards import Cards, deployment_cards, present
from tests.e2e.conftest import Deployment
from tests.e2e.helpers import Visit, assert_identities, open_visit, registration
from tests.e2e.test_outpatient_flow import KNOWN_VISIT
from tests.support import hsm_env

pytestmark = pytest.mark.slow

FORGED = "0f" * 16


@pytest.fixture(scope="module")
def cards(deployment: Deployment) -> Cards:
    return deployment_cards(deployment)


async def card_proof(his: Client, cards: Cards) -> tuple[Card, Person, str]:
    """A genuine generation-3 card read at `his`'s terminal, and its proof's cred_ref."""
    card, person, keys = cards.good(3)
    out = await present(his, card, person, keys)
    assert out.yk_card_proof is not None
    return card, person, out.yk_card_proof.cred_ref


async def refused(call: object) -> ResultCode:
    with pytest.raises(BusinessError) as err:
        await call  # type: ignore[misc]
    return err.value.code


async def money_state(d: Deployment, psn_no: str, mdtrt_id: str) -> tuple[object, ...]:
    return (
        await d.fetchval("SELECT count(*) FROM tx_log"),
        await d.fetchval("SELECT count(*) FROM postings"),
        await d.fetchval("SELECT acct_balance_fen FROM persons WHERE psn_no = $1", psn_no),
        await d.fetchval("SELECT count(*) FROM settlements WHERE mdtrt_id = $1", mdtrt_id),
    )


def settle_by_card(visit: Visit, card: Card, cred_ref: str) -> settle_msg.Data:
    return visit.settle_data(mdtrt_cert_type="03", mdtrt_cert_no=card.card_no, yk_cred_ref=cred_ref)


async def test_a_visit_by_card_registers_and_settles_with_its_proof(
    deployment: Deployment, his: Client, cards: Cards
) -> None:
    card, person, cred_ref = await card_proof(his, cards)
    row = await deployment.fetchval(
        "SELECT jsonb_build_object('psn_no', psn_no, 'credential', credential, 'card_sn', card_sn,"
        " 'fixmedins_code', fixmedins_code, 'ttl_s', extract(epoch FROM expires_at - created_at))"
        " FROM card_proofs WHERE cred_ref = $1",
        cred_ref,
    )
    assert row is not None
    assert '"credential": "03"' in str(row) and f'"card_sn": "{card.card_sn}"' in str(row)
    assert f'"psn_no": "{person.psn_no}"' in str(row) and '"ttl_s": 600' in str(row)
    by_card = {"mdtrt_cert_type": "03", "mdtrt_cert_no": card.card_no, "yk_cred_ref": cred_ref}
    visit = await open_visit(his, person, KNOWN_VISIT[:2], registration_overrides=by_card)
    out = await his.settle(visit.region, settle_by_card(visit, card, cred_ref))
    assert out.setlinfo.psn_no == person.psn_no
    assert_identities(out.setlinfo)


async def test_money_by_card_without_a_good_proof_is_refused_and_changes_nothing(
    deployment: Deployment, his: Client, cards: Cards
) -> None:
    card, person, cred_ref = await card_proof(his, cards)
    _, _, others = await card_proof(his, cards)  # another person's card, read here
    async with deployment.client(deployment.hospital(1)) as elsewhere:
        await elsewhere.sign_in()
        _, _, foreign = await card_proof(elsewhere, cards)  # read at another institution
    stale_card, stale_person, stale = await card_proof(his, cards)
    await deployment.fetchval(
        "UPDATE card_proofs SET created_at = created_at - interval '1 hour',"
        " expires_at = expires_at - interval '1 hour' WHERE cred_ref = $1",
        stale,
    )
    visit = await open_visit(his, person, KNOWN_VISIT[:2])
    before = await money_state(deployment, person.psn_no, visit.mdtrt_id)
    for sent, want in [
        ("", ResultCode.card_proof_missing),
        (FORGED, ResultCode.card_proof_unknown),
        (others, ResultCode.card_proof_other_person),
        (foreign, ResultCode.card_proof_other_terminal),
    ]:
        got = await refused(his.settle(visit.region, settle_by_card(visit, card, sent)))
        assert got is want, (sent, got)
        assert await money_state(deployment, person.psn_no, visit.mdtrt_id) == before
    stale_visit = await open_visit(his, stale_person, KNOWN_VISIT[:2])
    got = await refused(
        his.settle(stale_visit.region, settle_by_card(stale_visit, stale_card, stale))
    )
    assert got is ResultCode.card_proof_expired
    # The right proof still settles the visit the refusals left alone.
    out = await his.settle(visit.region, settle_by_card(visit, card, cred_ref))
    assert out.setlinfo.psn_no == person.psn_no


async def test_a_2201_by_card_needs_the_proof_too(
    deployment: Deployment, his: Client, cards: Cards
) -> None:
    card, person, cred_ref = await card_proof(his, cards)
    by_card = {"mdtrt_cert_type": "03", "mdtrt_cert_no": card.card_no}
    info = await his.person_info_by_id_number(person.certno)
    region = info.insuinfo[0].insuplc_admdvs
    reg = registration(person, "PROOF000001", **by_card)
    tx_before = await deployment.fetchval("SELECT count(*) FROM tx_log")
    assert await refused(his.register(region, reg)) is ResultCode.card_proof_missing
    forged = registration(person, "PROOF000001", **by_card, yk_cred_ref=FORGED)
    assert await refused(his.register(region, forged)) is ResultCode.card_proof_unknown
    assert await deployment.fetchval("SELECT count(*) FROM tx_log") == tx_before
    good = registration(person, "PROOF000001", **by_card, yk_cred_ref=cred_ref)
    assert (await his.register(region, good)).data.mdtrt_id


async def test_a_revoked_card_no_longer_carries_money(
    deployment: Deployment, his: Client, cards: Cards
) -> None:
    card, person, cred_ref = await card_proof(his, cards)
    visit = await open_visit(his, person, KNOWN_VISIT[:2])
    before = await money_state(deployment, person.psn_no, visit.mdtrt_id)
    await deployment.fetchval(
        "UPDATE cards SET status = 'revoked' WHERE card_sn = $1", card.card_sn
    )
    got = await refused(his.settle(visit.region, settle_by_card(visit, card, cred_ref)))
    assert got is ResultCode.card_proof_revoked
    assert await money_state(deployment, person.psn_no, visit.mdtrt_id) == before


async def test_an_ecard_proof_carries_an_ecard_visit_and_not_a_card_one(
    deployment: Deployment, his: Client
) -> None:
    platform = platform_from_env(hsm_env(deployment.engine.log_path.parent))
    person = deployment.person()
    issued = await platform.issue(person)
    out: person_info_msg.Output = await his.person_info_by_ecard(issued.token_id, issued.qr)
    assert out.yk_card_proof is not None
    cred_ref = out.yk_card_proof.cred_ref
    by_ecard = {"mdtrt_cert_type": "01", "mdtrt_cert_no": issued.token_id, "yk_cred_ref": cred_ref}
    visit = await open_visit(his, person, KNOWN_VISIT[:2], registration_overrides=by_ecard)
    as_card = visit.settle_data(mdtrt_cert_type="03", mdtrt_cert_no="S0", yk_cred_ref=cred_ref)
    assert await refused(his.settle(visit.region, as_card)) is ResultCode.card_proof_unknown
    settled = await his.settle(visit.region, visit.settle_data(**by_ecard))
    assert settled.setlinfo.psn_no == person.psn_no


async def test_ledger_balanced_after_the_proof_refusals(deployment: Deployment) -> None:
    report = await deployment.ledger()
    assert report.balanced, report.violations
