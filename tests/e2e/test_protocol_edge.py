"""The edge of POST /api/v1/tx: every kind of bad request is answered with its
documented status and result code, the error names the field, and nothing changes.
Bodies are built with the SDK's unchecked path (`Client.envelope_raw`), starting from
the JSON object the SDK sends for a valid request (`terminals.wire.as_dict`)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest

from terminals import signing, wire
from terminals.client import PATH, Client
from tests.e2e.conftest import Deployment
from tests.e2e.helpers import open_visit, valid_line

pytestmark = pytest.mark.slow


async def raw_post(
    d: Deployment, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(d.engine.url + PATH, data=body, headers=headers or {}) as resp,
    ):
        return resp.status, msgspec.json.decode(await resp.read())


def signed(d: Deployment, body: bytes, **override: Any) -> dict[str, str]:
    creds = d.credentials(d.hospital())
    headers = signing.signed_headers(
        creds.terminal_id,
        creds.mac_key,
        "POST",
        PATH,
        body,
        now_s=int(override.pop("now_s", time.time())),
        nonce=override.pop("nonce", signing.new_nonce()),
    )
    headers.update(override)
    return headers


async def ledger_size(d: Deployment) -> tuple[object, object]:
    return (
        await d.fetchval("SELECT count(*) FROM postings"),
        await d.fetchval("SELECT count(*) FROM tx_log"),
    )


@pytest.fixture
async def signed_in(deployment: Deployment) -> AsyncIterator[Client]:
    async with deployment.client() as client:
        await client.sign_in()
        yield client


async def envelope(client: Client, infno: str, input_obj: Any, **fields: Any) -> bytes:
    """A valid envelope from `client` (its sign_no, a fresh msgid) with `fields` changed."""
    msgid = await client.msgids.next()
    data = msgspec.json.decode(client.envelope_raw(infno, msgid, input_obj, "510100"))
    data.update(fields)
    return msgspec.json.encode(data)


async def test_unsigned_request_is_401(deployment: Deployment) -> None:
    status, ans = await raw_post(deployment, b"{}")
    assert status == 401
    assert ans["infcode"] == -1 and ans["yk_result"] == "signature_missing"
    assert ans["err_msg"].startswith("X-Yk-Terminal")


async def test_bad_signature_is_401(deployment: Deployment) -> None:
    body = b'{"infno":"1101"}'
    headers = signed(deployment, body)
    headers[signing.HEADER_SIGNATURE] = "0" * 64
    status, ans = await raw_post(deployment, body, headers)
    assert (status, ans["yk_result"]) == (401, "signature_invalid")


async def test_body_changed_after_signing_is_401(deployment: Deployment) -> None:
    headers = signed(deployment, b'{"infno":"1101"}')
    status, ans = await raw_post(deployment, b'{"infno":"2207"}', headers)
    assert (status, ans["yk_result"]) == (401, "signature_invalid")


async def test_replayed_nonce_is_401(deployment: Deployment) -> None:
    body = b"{}"
    headers = signed(deployment, body)
    first, _ = await raw_post(deployment, body, headers)
    assert first == 200  # signature fine; the empty envelope is a field error
    status, ans = await raw_post(deployment, body, headers)
    assert (status, ans["yk_result"]) == (401, "nonce_replayed")


@pytest.mark.parametrize("skew_s", [-301, 301])
async def test_stale_or_future_timestamp_is_401(deployment: Deployment, skew_s: int) -> None:
    body = b"{}"
    status, ans = await raw_post(
        deployment, body, signed(deployment, body, now_s=time.time() + skew_s)
    )
    assert (status, ans["yk_result"]) == (401, "timestamp_outside_window")


async def test_unknown_terminal_is_401(deployment: Deployment) -> None:
    body = b"{}"
    headers = signed(deployment, body)
    headers[signing.HEADER_TERMINAL] = "TNOBODY"
    status, ans = await raw_post(deployment, body, headers)
    assert (status, ans["yk_result"]) == (401, "terminal_unknown")


async def test_malformed_json_is_400(deployment: Deployment) -> None:
    body = b'{"infno": "1101",'
    status, ans = await raw_post(deployment, body, signed(deployment, body))
    assert (status, ans["yk_result"]) == (400, "request_body_malformed")


async def test_unknown_infno(deployment: Deployment, signed_in: Client) -> None:
    body = await envelope(signed_in, "9999", {})
    status, ans = await raw_post(deployment, body, signed(deployment, body))
    assert (status, ans["yk_result"]) == (200, "infno_unknown")
    assert ans["err_msg"].startswith("infno")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"msgid": "x" * 31}, "msgid"),
        ({"fixmedins_name": "名" * 201}, "fixmedins_name"),
        ({"mdtrtarea_admvs": "51010"}, "mdtrtarea_admvs"),
        ({"opter_type": "9"}, "opter_type"),
        ({"inf_time": "2026/11/29"}, "inf_time"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
async def test_bad_envelope_field_is_named(
    deployment: Deployment, signed_in: Client, change: dict[str, Any], field: str
) -> None:
    body = await envelope(
        signed_in, "1101", {"data": {"mdtrt_cert_type": "02", "mdtrt_cert_no": "x"}}, **change
    )
    before = await ledger_size(deployment)
    status, ans = await raw_post(deployment, body, signed(deployment, body))
    assert (status, ans["infcode"], ans["yk_result"]) == (200, -1, "field_invalid")
    assert ans["err_msg"].startswith(field), ans["err_msg"]
    assert await ledger_size(deployment) == before


async def test_missing_envelope_field_is_named(deployment: Deployment, signed_in: Client) -> None:
    data = msgspec.json.decode(await envelope(signed_in, "1101", {}))
    del data["opter"]
    body = msgspec.json.encode(data)
    status, ans = await raw_post(deployment, body, signed(deployment, body))
    assert (status, ans["yk_result"]) == (200, "field_invalid")
    assert ans["err_msg"] == "opter: required field missing"


async def test_call_without_sign_in_is_refused(deployment: Deployment) -> None:
    async with deployment.client() as client:  # never signed in
        body = await envelope(
            client, "1101", {"data": {"mdtrt_cert_type": "02", "mdtrt_cert_no": "x"}}
        )
        status, ans = await raw_post(deployment, body, signed(deployment, body))
    assert (status, ans["yk_result"]) == (200, "sign_in_required")


@pytest.mark.parametrize(
    ("mutate", "field", "result"),
    [
        (
            lambda line: line.update(det_item_fee_sumamt="100.001"),
            "det_item_fee_sumamt",
            "field_invalid",
        ),
        (lambda line: line.update(det_item_fee_sumamt=-1), "det_item_fee_sumamt", "field_invalid"),
        (lambda line: line.update(cnt="0"), "cnt", "field_invalid"),
        (lambda line: line.update(pric="1.0000001"), "pric", "field_invalid"),
        (
            lambda line: line.update(det_item_fee_sumamt="99.99"),
            "det_item_fee_sumamt",
            "fee_detail_amount_mismatch",
        ),
        (lambda line: line.pop("med_list_codg"), "med_list_codg", "field_invalid"),
        (lambda line: line.update(feedetl_sn="9" * 31), "feedetl_sn", "field_invalid"),
        (lambda line: line.update(fee_ocur_time="yesterday"), "fee_ocur_time", "field_invalid"),
    ],
)
async def test_bad_fee_detail_names_its_field_and_changes_nothing(
    deployment: Deployment, signed_in: Client, mutate: Any, field: str, result: str
) -> None:
    visit = await open_visit(signed_in, deployment.person(), [])
    line = wire.as_dict(valid_line(visit))
    mutate(line)
    body = await envelope(signed_in, "2204", {"feedetail": [line]}, insuplc_admdvs=visit.region)
    before = await ledger_size(deployment)
    status, ans = await raw_post(deployment, body, signed(deployment, body))
    assert (status, ans["yk_result"]) == (200, result), ans
    assert f"feedetail[0].{field}" in ans["err_msg"], ans["err_msg"]
    assert await ledger_size(deployment) == before
    assert (
        await deployment.fetchval(
            "SELECT count(*) FROM fee_details WHERE mdtrt_id = $1", visit.mdtrt_id
        )
        == 0
    )


async def test_three_decimal_settlement_amount_is_refused(
    deployment: Deployment, signed_in: Client
) -> None:
    visit = await open_visit(signed_in, deployment.person(), [("TJIA0001", "100.00", "1")])
    data = wire.as_dict(visit.settle_data())
    data["medfee_sumamt"] = "100.001"
    body = await envelope(signed_in, "2207", {"data": data}, insuplc_admdvs=visit.region)
    before = await ledger_size(deployment)
    status, ans = await raw_post(deployment, body, signed(deployment, body))
    assert (status, ans["yk_result"]) == (200, "field_invalid")
    assert ans["err_msg"] == "input.data.medfee_sumamt: at most 2 decimal places"
    assert await ledger_size(deployment) == before


async def test_wrong_institution_in_envelope_is_refused(
    deployment: Deployment, signed_in: Client
) -> None:
    body = await envelope(signed_in, "1101", {}, fixmedins_code="H51010099999")
    status, ans = await raw_post(deployment, body, signed(deployment, body))
    assert (status, ans["yk_result"]) == (200, "institution_mismatch")


async def test_a_treating_region_that_is_not_the_institutions_is_refused(
    deployment: Deployment, signed_in: Client
) -> None:
    """mdtrtarea_admvs decides the catalog and the clearing of a cross-region
    settlement: it must be the institution's region, whatever the HIS claims."""
    before = await ledger_size(deployment)
    body = await envelope(signed_in, "1101", {}, mdtrtarea_admvs="511100")
    status, ans = await raw_post(deployment, body, signed(deployment, body))
    assert (status, ans["yk_result"]) == (200, "institution_mismatch")
    assert ans["err_msg"].startswith("mdtrtarea_admvs: 511100 is not the region of")
    assert await ledger_size(deployment) == before
