"""What integrators and ops see around the transactions: the generated OpenAPI
document and docs page, transaction and money metrics, and the SDK's handling of a
lost answer (never a new msgid; the identical resend settles exactly once)."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.ledger_seal import verify
from engine.txn.routes import build_routes
from terminals.client import Client, OutcomeUnknown
from terminals.messages import setl
from tests.e2e.conftest import Deployment
from tests.e2e.helpers import open_visit
from tests.support import http_get

pytestmark = pytest.mark.slow


def test_openapi_describes_every_route_and_transaction(deployment: Deployment) -> None:
    status, headers, body = http_get(deployment.engine.url + "/openapi.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    doc = json.loads(body)
    assert doc["openapi"].startswith("3.1")
    assert {"/api/v1/tx", "/healthz", "/readyz", "/metrics"} <= set(doc["paths"])
    assert set(doc["x-yikatong-transactions"]) == set(build_routes())
    schemas = doc["components"]["schemas"]
    for tx in doc["x-yikatong-transactions"].values():
        for ref in (tx["input"], tx["output"]):
            assert ref["$ref"].rsplit("/", 1)[1] in schemas
    envelope = schemas["Envelope"]
    assert envelope["properties"]["msgid"]["pattern"]
    assert "input" in envelope["required"]
    status, headers, page = http_get(deployment.engine.url + "/docs")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"2207 outpatient settlement" in page and b"det_item_fee_sumamt" in page


async def test_lost_settlement_answer_is_resent_identically_and_settles_once(
    deployment: Deployment,
) -> None:
    async with deployment.client() as c:
        await c.sign_in()
        person = deployment.person()
        visit = await open_visit(c, person, [("TJIA0001", "100.00", "1")])
        hasty = Client(
            deployment.engine.url, deployment.credentials(deployment.hospital()), timeout_s=0.0005
        )
        hasty.sign_no = c.sign_no
        async with hasty:
            with pytest.raises(OutcomeUnknown) as lost:
                await hasty.settle(visit.region, visit.settle_data())
        assert lost.value.msgid and lost.value.infno == "2207"
        out = await c.resend(lost.value, setl.Output)
        again = await c.resend(lost.value, setl.Output)
        assert out == again
        count = await deployment.fetchval(
            "SELECT count(*) FROM settlements WHERE mdtrt_id = $1", visit.mdtrt_id
        )
        assert count == 1
    assert (await deployment.ledger()).balanced


async def test_transactions_and_money_are_counted(deployment: Deployment, his: Client) -> None:
    visit = await open_visit(his, deployment.person(), [("TJIA0001", "100.00", "1")])
    out = await his.settle(visit.region, visit.settle_data())
    status, _, body = http_get(deployment.engine.url + "/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    tx = {(s.labels["infno"], s.labels["result"]) for s in families["yikatong_tx"].samples}
    assert ("2207", "ok") in tx and ("9001", "ok") in tx
    moved = {
        (s.labels["flow"], s.labels["kind"], s.labels["fund"]): s.value
        for s in families["yikatong_settlement_amount_fen"].samples
        if s.name.endswith("_total")
    }
    assert moved[("outpatient", "settle", "fund")] >= int(out.setlinfo.fund_pay_sumamt * 100)


async def test_engine_seals_the_journal_in_the_background(
    deployment: Deployment, his: Client
) -> None:
    """Entries written by settlements are sealed into the region's hash chain by the
    running engine within a few intervals, and the chains verify."""
    visit = await open_visit(his, deployment.person(), [("TJIA0001", "100.00", "1")])
    await his.settle(visit.region, visit.settle_data())
    deadline = asyncio.get_running_loop().time() + 15
    while await deployment.fetchval(
        "SELECT count(*) FROM journal_entries e WHERE NOT EXISTS"
        " (SELECT 1 FROM journal_seals s WHERE s.entry_id = e.entry_id)"
    ):
        assert asyncio.get_running_loop().time() < deadline, "journal not sealed"
        await asyncio.sleep(0.1)
    conn = await asyncpg.connect(deployment.dsn)
    try:
        report = await verify(conn, timeout_s=60)
    finally:
        await conn.close()
    assert report.broken == [] and report.sealed > 0
