"""The card agent as `yikatong agent` wires it — PcscReader for the card flow and a
second PcscReader for the presence watcher, the bearer token, require-PIN mode —
through a real pcscd with a virtual card in the vpcd reader, against a real engine
process: a generation-3 card is authenticated twice in a row (a fresh challenge and a
fresh card proof each time), and taking the card out gives a `card_removed` event and
a `no_card` refusal."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from simulators.card.factory import build_card
from simulators.card.keys import IssuerMasters
from simulators.pcscd import PcscdManager
from tests.e2e.conftest import Deployment, deployment  # noqa: F401  (fixture)
from tests.e2e.test_card_agent import AgentRig, pcsc_rig
from tests.pcsc_support import InsertCard
from tests.support import hsm_env


@pytest.fixture
async def agent_http(
    deployment: Deployment,  # noqa: F811
    pcscd: PcscdManager,
    tmp_path: Path,
) -> AsyncIterator[AgentRig]:
    async with (
        deployment.client() as client,
        pcsc_rig(
            pcscd.readers[0], client, deployment.engine.url, tmp_path, require_pin=True
        ) as rig,
    ):
        yield rig


async def test_agent_over_pcsc_authenticates_and_reports_removal(
    deployment: Deployment,  # noqa: F811
    insert_card: InsertCard,
    agent_http: AgentRig,
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
    proofs = set()
    for _ in range(2):
        got = await agent_http.post("/v1/person-info", {"pin": card.pin})
        assert got.status == 200, got.body
        assert got.body["person"]["baseinfo"]["psn_no"] == pop.persons[i].psn_no
        assert (
            got.body["card"]["atr"] == build_card(card, pop.persons[i], masters).atr.hex().upper()
        )
        proofs.add(got.body["cred_ref"])
    assert len(proofs) == 2
    seq = (await agent_http.get("/v1/status")).body["last_event_seq"]
    vpicc.stop()
    events = await agent_http.get("/v1/events", params={"after": str(seq), "wait_s": "10"})
    assert [e["kind"] for e in events.body["events"]] == ["card_removed"]
    got = await agent_http.post("/v1/person-info", {"pin": card.pin})
    assert got.status == 422 and got.result == "no_card"
