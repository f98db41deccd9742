"""The card agent as `yikatong agent` wires it — PcscReader for the card flow and a
second PcscReader for the presence watcher — through a real pcscd with a virtual
card in the vpcd reader, against a real engine process: a generation-3 card is
authenticated twice in a row (a fresh challenge each time), and taking the card out
gives a `card_removed` event and a `no_card` refusal."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from card.pcsc import PcscReader
from simulators.card.factory import build_card
from simulators.card.keys import IssuerMasters
from simulators.pcscd import PcscdManager
from terminals.agent.core import CardAgent
from terminals.agent.http import AgentApp
from tests.e2e.conftest import Deployment, deployment  # noqa: F401  (fixture)
from tests.pcsc_support import InsertCard
from tests.support import hsm_env


@pytest.fixture
async def agent_http(
    deployment: Deployment,  # noqa: F811
    pcscd: PcscdManager,
) -> AsyncIterator[TestClient]:
    name = pcscd.readers[0]
    card_reader, watch_reader = PcscReader(name), PcscReader(name)
    async with deployment.client() as client:
        app = AgentApp(CardAgent(card_reader, client), watch_reader=watch_reader)
        async with TestClient(TestServer(app.build(), host="127.0.0.1")) as http:
            yield http
    card_reader.close()
    watch_reader.close()


async def test_agent_over_pcsc_authenticates_and_reports_removal(
    deployment: Deployment,  # noqa: F811
    insert_card: InsertCard,
    agent_http: TestClient,
) -> None:
    env = hsm_env(deployment.engine.log_path.parent)
    masters = IssuerMasters.from_env(env)
    pop = deployment.pop
    i = next(
        i
        for i in range(len(pop.persons) - 1, 0, -1)  # from the end: other modules start at 0
        if pop.card(i).generation == 3 and pop.card(i).usable_on(dt.date.today())
    )
    card = pop.card(i)
    vpicc = insert_card(build_card(card, pop.persons[i], masters))
    for _ in range(2):
        resp = await agent_http.post("/v1/person-info", json={"pin": card.pin})
        body = await resp.json()
        assert resp.status == 200, body
        assert body["person"]["baseinfo"]["psn_no"] == pop.persons[i].psn_no
        assert body["card"]["atr"] == build_card(card, pop.persons[i], masters).atr.hex().upper()
    seq = (await (await agent_http.get("/v1/status")).json())["last_event_seq"]
    vpicc.stop()
    events = await (
        await agent_http.get("/v1/events", params={"after": str(seq), "wait_s": "10"})
    ).json()
    assert [e["kind"] for e in events["events"]] == ["card_removed"]
    resp = await agent_http.post("/v1/person-info", json={})
    assert resp.status == 422 and (await resp.json())["error"]["result"] == "no_card"
