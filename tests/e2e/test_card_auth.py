"""Card authentication end to end (9301 + 1101 by social security card) through a real
engine process, its database and its soft HSM, with the SDK as a card agent uses it.

Cryptograms are computed the way the card computes them: the card's keys are
diversified from the issuer masters in the same key file the engine's HSM opens
(simulators.card.keys) and the answer is hsm.cardauth's internal-auth cryptogram.
Clones get keys of their own (`clone_keys`). The expired-challenge test ages a real
9301 challenge in the database (the engine's clock cannot be injected from outside,
and the 60 s lifetime is a protocol constant); everything else runs as in production.
Refusals must leave tx_log and the ledger untouched."""

from __future__ import annotations

import datetime as dt
import os

import asyncpg
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.card_purge import purge_expired
from hsm.cardauth import external_auth_cryptogram
from simulators.card.keys import clone_keys
from terminals.client import BusinessError, Client
from terminals.messages.card import challenge as challenge_msg
from terminals.messages.card import person_info as person_info_msg
from terminals.results import ResultCode
from tests.e2e.cards import Cards, deployment_cards, present, usable
from tests.e2e.conftest import Deployment
from tests.support import http_get

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cards(deployment: Deployment) -> Cards:
    return deployment_cards(deployment)


async def refused(call: object) -> BusinessError:
    with pytest.raises(BusinessError) as err:
        await call  # type: ignore[misc]
    return err.value


async def unchanged_state(d: Deployment) -> tuple[object, object]:
    return await d.fetchval("SELECT count(*) FROM tx_log"), await d.fetchval(
        "SELECT count(*) FROM postings"
    )


def card_auth_counts(d: Deployment) -> dict[tuple[str, str], float]:
    _, _, body = http_get(d.engine.url + "/metrics")
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.name == "yikatong_card_auth_total":
                out[(s.labels["method"], s.labels["result"])] = s.value
            if s.name == "yikatong_hsm_op_duration_seconds_count":
                out[("hsm", s.labels["op"])] = s.value
    return out


async def test_genuine_cards_of_both_generations_identify_their_holder(
    deployment: Deployment, his: Client, cards: Cards
) -> None:
    """Generation 2 (3DES) and 3 (SM4): the answer is the holder's, the same as 1101
    by ID number, and the challenge is burned."""
    for generation in (2, 3):
        card, person, keys = cards.good(generation)
        issued = await his.card_challenge(card.card_sn)
        assert issued.expires_in_s == 60 and issued.ext_cryptogram == ""
        challenge = bytes.fromhex(issued.challenge)
        out = await present(his, card, person, keys, challenge=challenge)
        assert out.baseinfo.psn_no == person.psn_no
        assert out.baseinfo.certno == person.certno and out.baseinfo.psn_name == person.psn_name
        # The same answer as by ID number, plus the card proof for 2201 / 2207.
        assert out.yk_card_proof is not None and len(out.yk_card_proof.cred_ref) == 32
        by_id = await his.person_info_by_id_number(person.certno)
        assert by_id.yk_card_proof is None
        assert msgspec.structs.replace(out, yk_card_proof=None) == by_id
        used = await deployment.fetchval(
            "SELECT used_at IS NOT NULL FROM card_challenges WHERE challenge = $1", challenge
        )
        assert used is True


async def test_9301_ext_cryptogram_is_the_cards_external_auth_answer(
    his: Client, cards: Cards
) -> None:
    """The HSM answers EXTERNAL AUTHENTICATE under the card's external key, chosen by
    the card's generation in the issuer's record."""
    for generation in (3, 2):
        card, _, keys = cards.good(generation)
        ext_pf, ext_challenge = os.urandom(8), os.urandom(8)
        issued = await his.card_challenge(card.card_sn, ext_pf, ext_challenge)
        expected = external_auth_cryptogram(keys.external_auth, ext_pf, ext_challenge)
        assert bytes.fromhex(issued.ext_cryptogram) == expected
        assert len(issued.challenge) == 16
    with pytest.raises(ValueError, match="go together"):
        await his.card_challenge(card.card_sn, ext_pf, None)
    half = challenge_msg.Data(card_sn=card.card_sn, ext_challenge=ext_challenge.hex())
    err = await refused(
        his.call(challenge_msg.Input(data=half), challenge_msg.Output, state_changing=False)
    )
    assert err.code is ResultCode.field_invalid


async def test_clone_is_refused_and_its_challenge_stays_burned(
    deployment: Deployment, his: Client, cards: Cards
) -> None:
    """Right data, wrong keys: cryptogram mismatch. The challenge is consumed by that
    one check, so the genuine answer over it afterwards is already_used."""
    card, person, keys = cards.good(3)
    before = await unchanged_state(deployment)
    challenge = bytes.fromhex((await his.card_challenge(card.card_sn)).challenge)
    err = await refused(present(his, card, person, clone_keys(card), challenge=challenge))
    assert err.code is ResultCode.card_cryptogram_mismatch
    assert "cryptogram" in err.err_msg and card.card_sn not in err.err_msg
    err = await refused(present(his, card, person, keys, challenge=challenge))
    assert err.code is ResultCode.card_challenge_already_used
    assert await unchanged_state(deployment) == before


async def test_replayed_challenge_is_refused_as_already_used(his: Client, cards: Cards) -> None:
    card, person, keys = cards.good(2)
    challenge = bytes.fromhex((await his.card_challenge(card.card_sn)).challenge)
    await present(his, card, person, keys, challenge=challenge)
    err = await refused(present(his, card, person, keys, challenge=challenge))
    assert err.code is ResultCode.card_challenge_already_used


async def test_challenge_of_another_terminal_or_card_is_unknown_and_stays_usable(
    deployment: Deployment, his: Client, cards: Cards
) -> None:
    """A challenge is bound to the terminal and card it was issued for; presented
    elsewhere it is unknown and is not consumed."""
    card, person, keys = cards.good(3)
    other_card, other_person, other_keys = cards.good(3)
    async with deployment.client(deployment.hospital(1)) as other:
        await other.sign_in()
        challenge = bytes.fromhex((await other.card_challenge(card.card_sn)).challenge)
        err = await refused(present(his, card, person, keys, challenge=challenge))
        assert err.code is ResultCode.card_challenge_unknown
        err = await refused(
            present(other, other_card, other_person, other_keys, challenge=challenge)
        )
        assert err.code is ResultCode.card_challenge_unknown
        out = await present(other, card, person, keys, challenge=challenge)
        assert out.baseinfo.psn_no == person.psn_no
    err = await refused(present(his, card, person, keys, challenge=os.urandom(8)))
    assert err.code is ResultCode.card_challenge_unknown


async def test_expired_challenge_is_refused(
    deployment: Deployment, his: Client, cards: Cards
) -> None:
    """A real 9301 challenge aged past its 60 s in the database (see module docstring)."""
    card, person, keys = cards.good(2)
    challenge = bytes.fromhex((await his.card_challenge(card.card_sn)).challenge)
    await deployment.fetchval(
        "UPDATE card_challenges SET created_at = created_at - interval '61 s',"
        " expires_at = expires_at - interval '61 s' WHERE challenge = $1",
        challenge,
    )
    err = await refused(present(his, card, person, keys, challenge=challenge))
    assert err.code is ResultCode.card_challenge_expired


async def test_revoked_and_expired_cards_are_refused_after_proving_themselves(
    deployment: Deployment, his: Client, cards: Cards
) -> None:
    """The population's revoked and expired cards (fixed indexes) are genuine chips:
    their cryptogram passes and the answer names the card's state. A clone of a
    revoked card is a clone first."""

    before = await unchanged_state(deployment)
    card, person, keys = cards.take(lambda c: c.status == "revoked")
    err = await refused(present(his, card, person, keys))
    assert err.code is ResultCode.card_revoked
    err = await refused(present(his, card, person, clone_keys(card)))
    assert err.code is ResultCode.card_cryptogram_mismatch
    card, person, keys = cards.take(lambda c: c.status == "active" and not usable(c))
    assert card.expiry_date < dt.date.today()
    err = await refused(present(his, card, person, keys))
    assert err.code is ResultCode.card_expired
    assert await unchanged_state(deployment) == before


async def test_card_number_or_holder_that_is_not_the_cards_is_refused(
    his: Client, cards: Cards
) -> None:
    card, person, keys = cards.good(3)
    other_card, other_person, _ = cards.good(2)
    for kwargs, field in (
        ({"card_no": other_card.card_no}, "mdtrt_cert_no"),
        ({"certno": other_person.certno}, "certno"),
        ({"psn_name": other_person.psn_name + "甲"}, "psn_name"),
    ):
        err = await refused(present(his, card, person, keys, **kwargs))  # type: ignore[arg-type]
        assert err.code is ResultCode.card_person_mismatch
        assert err.err_msg.startswith(f"input.data.{field}")
        assert other_person.certno not in err.err_msg


async def test_unknown_card_and_missing_auth_data_are_refused(his: Client, cards: Cards) -> None:
    card, person, keys = cards.good(3)
    unknown = "510100D156000005FFFFFFFFFFFFFFFF"
    err = await refused(his.card_challenge(unknown))
    assert err.code is ResultCode.card_unknown
    challenge = bytes.fromhex((await his.card_challenge(card.card_sn)).challenge)
    err = await refused(
        his.person_info_by_card(card.card_no, unknown, challenge, bytes(8), bytes(8))
    )
    assert err.code is ResultCode.card_unknown
    data = person_info_msg.Data(
        mdtrt_cert_type="03", mdtrt_cert_no=card.card_no, card_sn=card.card_sn
    )
    err = await refused(his.person_info(data))
    assert err.code is ResultCode.auth_data_missing
    assert err.err_msg.startswith("input.data.yk_card_auth")
    auth = person_info_msg.CardAuth(
        challenge=challenge.hex(), process_factor="00" * 8, cryptogram="00" * 8
    )
    as_id = person_info_msg.Data(
        mdtrt_cert_type="02", mdtrt_cert_no=person.certno, yk_card_auth=auth
    )
    err = await refused(his.person_info(as_id))
    assert err.code is ResultCode.field_invalid
    # None of these touched the challenge: it still authenticates the card.
    out = await present(his, card, person, keys, challenge=challenge)
    assert out.baseinfo.psn_no == person.psn_no


async def test_9301_needs_a_sign_in(deployment: Deployment, cards: Cards) -> None:
    card, _, _ = cards.good(3)
    async with deployment.client(deployment.hospital(2)) as c:
        err = await refused(c.card_challenge(card.card_sn))
    assert err.code is ResultCode.sign_in_required


async def test_metrics_count_card_authentications_by_result(
    deployment: Deployment, his: Client, cards: Cards
) -> None:
    before = card_auth_counts(deployment)
    card, person, keys = cards.good(3)
    await present(his, card, person, keys)
    await refused(present(his, card, person, clone_keys(card)))
    await his.person_info_by_id_number(person.certno)
    after = card_auth_counts(deployment)

    def moved(key: tuple[str, str]) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert moved(("card", "ok")) == 1
    assert moved(("card", "card_cryptogram_mismatch")) == 1
    assert moved(("certno", "ok")) == 1
    assert moved(("hsm", "verify_card_cryptogram")) == 2
    assert moved(("hsm", "random_bytes")) >= 2


async def test_purge_deletes_long_expired_challenges_and_tokens_in_bounded_batches(
    deployment: Deployment, his: Client, cards: Cards
) -> None:
    """What the engine's background purge runs: only rows expired more than the grace
    ago go, at most batch_max of each table per run."""
    card, _, _ = cards.good(3)
    live = bytes.fromhex((await his.card_challenge(card.card_sn)).challenge)
    conn = await asyncpg.connect(deployment.dsn)
    try:
        old = [os.urandom(8) for _ in range(3)]
        for challenge in old:
            await conn.execute(
                "INSERT INTO card_challenges (challenge, terminal_id, card_sn, created_at,"
                " expires_at) VALUES ($1, $2, $3, now() - interval '1 hour',"
                " now() - interval '59 min')",
                challenge,
                his.credentials.terminal_id,
                card.card_sn,
            )
        await conn.execute(
            "INSERT INTO ecard_tokens_used (token_id, expires_at) VALUES"
            " ('PURGEME000000000001', now() - interval '1 hour'),"
            " ('PURGEME000000000002', now() - interval '1 hour'),"
            " ('KEEPME00000000000001', now() - interval '1 min')"
        )
        first = await purge_expired(conn, batch_max=2, grace_s=300, timeout_s=5)
        second = await purge_expired(conn, batch_max=2, grace_s=300, timeout_s=5)
        third = await purge_expired(conn, batch_max=2, grace_s=300, timeout_s=5)
        assert (first, second, third) == (4, 1, 0)
        left = await conn.fetchval(
            "SELECT count(*) FROM card_challenges WHERE challenge = ANY($1::bytea[])", [*old, live]
        )
        assert left == 1  # the live one
        kept = await conn.fetchval("SELECT array_agg(token_id) FROM ecard_tokens_used")
        assert "KEEPME00000000000001" in kept and not any(t.startswith("PURGEME") for t in kept)
    finally:
        await conn.close()


async def test_ledger_balanced_after_all_card_refusals(deployment: Deployment) -> None:
    report = await deployment.ledger()
    assert report.balanced, report.violations
