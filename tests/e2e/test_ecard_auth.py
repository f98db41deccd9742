"""E-card authentication end to end (1101 with mdtrt_cert_type 01) through a real
engine process, its database and its soft HSM: tokens are issued by the simulated
platform (simulators.ecard) signing through the Hsm protocol with the same key file
the engine opened. Refusals name their cause, leave tx_log and the ledger untouched,
and burn a token id only once the token was accepted as genuine and current."""

from __future__ import annotations

import datetime as dt
import time

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from card import ecard
from hsm.keystore import KeyStore
from hsm.soft import SoftHsm
from hsm.soft_admin import demo_hierarchy
from simulators.ecard import EcardPlatform, platform_from_env
from simulators.population import Person
from terminals.client import BusinessError, Client
from terminals.messages.card import person_info as person_info_msg
from terminals.results import ResultCode
from tests.e2e.conftest import Deployment
from tests.support import hsm_env, http_get

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def platform(deployment: Deployment) -> EcardPlatform:
    env = hsm_env(deployment.engine.log_path.parent)  # the key file the engine opened
    return platform_from_env(env)


async def refused(call: object) -> BusinessError:
    with pytest.raises(BusinessError) as err:
        await call  # type: ignore[misc]
    return err.value


async def state(d: Deployment) -> tuple[object, object, object]:
    return (
        await d.fetchval("SELECT count(*) FROM tx_log"),
        await d.fetchval("SELECT count(*) FROM postings"),
        await d.fetchval("SELECT count(*) FROM ecard_tokens_used"),
    )


def ecard_counts(d: Deployment) -> dict[str, float]:
    _, _, body = http_get(d.engine.url + "/metrics")
    return {
        s.labels["result"]: s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.name == "yikatong_card_auth_total" and s.labels["method"] == "ecard"
    }


async def test_genuine_token_identifies_the_person_once(
    deployment: Deployment, his: Client, platform: EcardPlatform
) -> None:
    person = deployment.person()
    issued = await platform.issue(person)
    out = await his.person_info_by_ecard(issued.token_id, issued.qr)
    assert out.baseinfo.psn_no == person.psn_no and out.baseinfo.certno == person.certno
    # The same answer as by ID number, plus the card proof for 2201 / 2207.
    assert out.yk_card_proof is not None and len(out.yk_card_proof.cred_ref) == 32
    by_id = await his.person_info_by_id_number(person.certno)
    assert by_id.yk_card_proof is None
    assert msgspec.structs.replace(out, yk_card_proof=None) == by_id
    burned = await deployment.fetchval(
        "SELECT count(*) FROM ecard_tokens_used WHERE token_id = $1", issued.token_id
    )
    assert burned == 1
    err = await refused(his.person_info_by_ecard(issued.token_id, issued.qr))
    assert err.code is ResultCode.ecard_token_already_used


async def test_reuse_is_refused_at_another_institution_too(
    deployment: Deployment, his: Client, platform: EcardPlatform
) -> None:
    issued = await platform.issue(deployment.person())
    async with deployment.client(deployment.hospital(1)) as other:
        await other.sign_in()
        await other.person_info_by_ecard(issued.token_id, issued.qr)
    err = await refused(his.person_info_by_ecard(issued.token_id, issued.qr))
    assert err.code is ResultCode.ecard_token_already_used


async def test_expired_and_not_yet_valid_tokens_are_refused_and_not_burned(
    deployment: Deployment, his: Client, platform: EcardPlatform
) -> None:
    person = deployment.person()
    before = await state(deployment)
    stale = await platform.issue(person, now_s=time.time() - 120)
    err = await refused(his.person_info_by_ecard(stale.token_id, stale.qr))
    assert err.code is ResultCode.ecard_token_expired and err.err_msg.endswith("expired")
    future = await platform.issue(person, now_s=time.time() + 120)
    err = await refused(his.person_info_by_ecard(future.token_id, future.qr))
    assert err.code is ResultCode.ecard_token_expired and "not valid yet" in err.err_msg
    long_lived = await platform.issue(person, lifetime_s=3600)
    err = await refused(his.person_info_by_ecard(long_lived.token_id, long_lived.qr))
    assert err.code is ResultCode.ecard_token_malformed
    assert await state(deployment) == before


async def test_tampered_payload_is_refused_as_a_bad_signature(
    deployment: Deployment, his: Client, platform: EcardPlatform
) -> None:
    """Someone else's ID number put into a genuine token: the signature no longer
    covers what is shown."""
    person, victim = deployment.person(), deployment.person()
    issued = await platform.issue(person)
    _, _, signature = issued.qr.split(".")
    forged = msgspec.structs.replace(issued.payload, certno=victim.certno, psn_name=victim.psn_name)
    qr = ecard.ecard_signing_input(forged).decode() + "." + signature
    before = await state(deployment)
    err = await refused(his.person_info_by_ecard(issued.token_id, qr))
    assert err.code is ResultCode.ecard_token_signature_invalid
    assert await state(deployment) == before
    # The genuine token was not burned by the forgery.
    out = await his.person_info_by_ecard(issued.token_id, issued.qr)
    assert out.baseinfo.psn_no == person.psn_no


async def test_token_signed_with_another_key_is_refused(
    deployment: Deployment, his: Client
) -> None:
    impostor = EcardPlatform(SoftHsm(KeyStore(demo_hierarchy())))
    issued = await impostor.issue(deployment.person())
    err = await refused(his.person_info_by_ecard(issued.token_id, issued.qr))
    assert err.code is ResultCode.ecard_token_signature_invalid


async def test_token_id_not_matching_mdtrt_cert_no_is_refused_and_not_burned(
    deployment: Deployment, his: Client, platform: EcardPlatform
) -> None:
    person = deployment.person()
    issued, other = await platform.issue(person), await platform.issue(person)
    err = await refused(his.person_info_by_ecard(other.token_id, issued.qr))
    assert err.code is ResultCode.ecard_token_id_mismatch
    assert err.err_msg.startswith("input.data.mdtrt_cert_no")
    out = await his.person_info_by_ecard(issued.token_id, issued.qr)
    assert out.baseinfo.psn_no == person.psn_no


async def test_malformed_or_missing_qr_is_refused(
    deployment: Deployment, his: Client, platform: EcardPlatform
) -> None:
    issued = await platform.issue(deployment.person())
    for qr in ("YKEC1.abc.def", "YKEC2" + issued.qr[5:], issued.qr + "A"):
        err = await refused(his.person_info_by_ecard(issued.token_id, qr))
        assert err.code is ResultCode.ecard_token_malformed, qr
        assert err.err_msg.startswith("input.data.yk_ecard_qr: ")
    data = person_info_msg.Data(mdtrt_cert_type="01", mdtrt_cert_no=issued.token_id)
    err = await refused(his.person_info(data))
    assert err.code is ResultCode.auth_data_missing
    over_long = msgspec.structs.replace(data, yk_ecard_qr="A" * 513)  # the engine checks it
    err = await refused(his.person_info(over_long))
    assert err.code is ResultCode.field_invalid
    as_card = person_info_msg.Data(
        mdtrt_cert_type="03", mdtrt_cert_no="S00000001", yk_ecard_qr=issued.qr
    )
    err = await refused(his.person_info(as_card))
    assert err.code is ResultCode.field_invalid


async def test_token_of_someone_not_insured_here_is_burned_and_refused(
    his: Client, platform: EcardPlatform
) -> None:
    stranger = Person(
        psn_no="999999000000000001",
        insuplc_admdvs="510100",
        certno="510104190001010000",
        psn_name="无名",
        gend="1",
        brdy=dt.date(1900, 1, 1),
        insutype="390",
        retired=False,
        psn_insu_date=dt.date(2010, 1, 1),
        emp_name="",
        acct_balance_fen=0,
    )
    issued = await platform.issue(stranger)
    err = await refused(his.person_info_by_ecard(issued.token_id, issued.qr))
    assert err.code is ResultCode.person_not_found
    err = await refused(his.person_info_by_ecard(issued.token_id, issued.qr))
    assert err.code is ResultCode.ecard_token_already_used


async def test_metrics_count_ecard_results(
    deployment: Deployment, his: Client, platform: EcardPlatform
) -> None:
    before = ecard_counts(deployment)
    issued = await platform.issue(deployment.person())
    await his.person_info_by_ecard(issued.token_id, issued.qr)
    await refused(his.person_info_by_ecard(issued.token_id, issued.qr))
    after = ecard_counts(deployment)
    assert after.get("ok", 0) - before.get("ok", 0) == 1
    used = "ecard_token_already_used"
    assert after.get(used, 0) - before.get(used, 0) == 1


async def test_ledger_balanced_after_all_ecard_refusals(deployment: Deployment) -> None:
    report = await deployment.ledger()
    assert report.balanced, report.violations
