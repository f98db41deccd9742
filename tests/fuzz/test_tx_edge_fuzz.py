"""Fuzzing the HTTP edge: valid, signed requests with one field replaced by an
arbitrary JSON value, removed, or joined by an unknown field. Whatever the value, the
engine answers 200 or 400 with a well-formed envelope — never 500 — and a refusal
changes nothing (the ledger still balances)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from terminals import signing
from terminals.client import PATH
from tests.e2e.conftest import Deployment

pytestmark = pytest.mark.slow

_seq = itertools.count()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=50)
    | st.sampled_from(
        ["", "0000", "1e400", "-1", "1.001", "NaN", "2026-02-30 10:00:00", "名" * 60]
    ),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=5,
)


def post(d: Deployment, body: bytes) -> tuple[int, dict[str, Any]]:
    creds = d.credentials(d.hospital())
    headers = signing.signed_headers(
        creds.terminal_id,
        creds.mac_key,
        "POST",
        PATH,
        body,
        now_s=int(time.time()),
        nonce=signing.new_nonce(),
    )
    request = urllib.request.Request(d.engine.url + PATH, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def templates(d: Deployment, sign_no: str) -> dict[str, dict[str, Any]]:
    person = d.pop.persons[-1]
    creds = d.credentials(d.hospital())
    envelope = {
        "infno": "",
        "msgid": "",
        "mdtrtarea_admvs": creds.mdtrtarea_admvs,
        "insuplc_admdvs": person.insuplc_admdvs,
        "opter_type": "1",
        "opter": creds.opter,
        "inf_time": "2026-11-29 10:00:00",
        "fixmedins_code": creds.fixmedins_code,
        "sign_no": sign_no,
    }
    return {
        "2201": {
            **envelope,
            "infno": "2201",
            "input": {
                "data": {
                    "psn_no": person.psn_no,
                    "insutype": person.insutype,
                    "begntime": "2026-11-29 10:00:00",
                    "mdtrt_cert_type": "02",
                    "mdtrt_cert_no": person.certno,
                    "ipt_otp_no": "FUZZ",
                }
            },
        },
        "2204": {
            **envelope,
            "infno": "2204",
            "input": {
                "feedetail": [
                    {
                        "feedetl_sn": "1",
                        "mdtrt_id": "NOVISIT",
                        "psn_no": person.psn_no,
                        "chrg_bchno": "B1",
                        "fee_ocur_time": "2026-11-29 10:00:00",
                        "med_list_codg": "TJIA0001",
                        "medins_list_codg": "L1",
                        "det_item_fee_sumamt": 10.0,
                        "cnt": 1,
                        "pric": 10,
                    }
                ]
            },
        },
        "2207": {
            **envelope,
            "infno": "2207",
            "input": {
                "data": {
                    "psn_no": person.psn_no,
                    "mdtrt_cert_type": "02",
                    "mdtrt_cert_no": person.certno,
                    "med_type": "11",
                    "medfee_sumamt": 10,
                    "mdtrt_id": "NOVISIT",
                    "insutype": person.insutype,
                }
            },
        },
    }


def leaf_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in leaf_paths(v, (*prefix, k))] or [prefix]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in leaf_paths(v, (*prefix, i))] or [prefix]
    return [prefix]


def mutate(doc: dict[str, Any], path: tuple[Any, ...], action: str, value: Any) -> None:
    parent: Any = doc
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if action == "replace":
        parent[key] = value
    elif action == "delete" and isinstance(parent, dict):
        del parent[key]
    elif isinstance(parent, dict):
        parent["zz_unknown"] = value


@pytest.fixture(scope="module")
def sign_no(deployment: Deployment) -> str:
    async def sign_in() -> str:
        async with deployment.client() as c:
            await c.sign_in()
            return c.sign_no

    return asyncio.run(sign_in())


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_no_input_gives_a_500(deployment: Deployment, sign_no: str, data: st.DataObject) -> None:
    infno = data.draw(st.sampled_from(["2201", "2204", "2207"]))
    doc = json.loads(json.dumps(templates(deployment, sign_no)[infno]))
    doc["msgid"] = f"{doc['fixmedins_code']}{next(_seq):018d}"
    path = data.draw(st.sampled_from(leaf_paths(doc)))
    action = data.draw(st.sampled_from(["replace", "delete", "add"]))
    mutate(doc, path, action, data.draw(json_values))
    status, answer = post(deployment, json.dumps(doc).encode())
    assert status in (200, 400), (status, answer)
    assert answer["infcode"] in (0, -1)
    assert isinstance(answer["yk_result"], str)
    if answer["infcode"] == -1:
        assert answer["err_msg"]


def test_ledger_balances_after_fuzzing(deployment: Deployment) -> None:
    report = asyncio.run(deployment.ledger())
    assert report.balanced, report.violations
