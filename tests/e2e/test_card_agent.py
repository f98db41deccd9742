"""The card agent end to end: its localhost HTTP API, a virtual card (both
applications, keys diversified from the issuer masters in the key file the engine's
HSM opened) in an in-memory reader, and a real engine process with its database.

The reader is in memory here so that this module does not need pcscd; the same
agent code over PcscReader and vpcd is exercised in tests/integration/test_pcsc_*.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from card.memory import MemoryReader
from simulators.card.app import CardMode
from simulators.card.factory import build_card
from simulators.card.keys import IssuerMasters
from simulators.population import Card
from terminals.agent.core import CardAgent
from terminals.agent.http import AgentApp
from terminals.client import Client
from terminals.results import ResultCode
from tests.e2e.conftest import Deployment
from tests.e2e.helpers import assert_identities, open_visit
from tests.e2e.test_outpatient_flow import KNOWN_VISIT
from tests.support import hsm_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def masters(deployment: Deployment) -> IssuerMasters:
    env = hsm_env(deployment.engine.log_path.parent)
    return IssuerMasters.from_env(env)


class Picker:
    def __init__(self, d: Deployment) -> None:
        self.d = d
        self.used: set[int] = set()

    def index(self, want: Callable[[Card], bool]) -> int:
        for i in range(len(self.d.pop.persons)):
            if i not in self.used and want(self.d.pop.card(i)):
                self.used.add(i)
                return i
        raise AssertionError("no such card in the population")


def usable(generation: int) -> Callable[[Card], bool]:
    return lambda c: c.generation == generation and c.usable_on(dt.date.today())


@pytest.fixture(scope="module")
def picker(deployment: Deployment) -> Picker:
    return Picker(deployment)


class Rig:
    def __init__(self, http: TestClient, reader: MemoryReader, agent: CardAgent) -> None:
        self.http = http
        self.reader = reader
        self.agent = agent

    async def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        resp = await self.http.post(path, json=body or {})
        return resp.status, await resp.json()


@pytest.fixture
async def rig(deployment: Deployment) -> AsyncIterator[Rig]:
    reader = MemoryReader(name="counter 1")
    async with deployment.client() as client:
        agent = CardAgent(reader, client)
        server = TestServer(AgentApp(agent).build(), host="127.0.0.1")
        async with TestClient(server) as http:
            yield Rig(http, reader, agent)


def insert(rig: Rig, d: Deployment, masters: IssuerMasters, index: int, mode: CardMode) -> Card:
    card = d.pop.card(index)
    rig.reader.insert(build_card(card, d.pop.persons[index], masters, mode))
    return card


@pytest.mark.parametrize("generation", [2, 3])
async def test_genuine_card_identifies_its_holder_through_the_agent_with_pin(
    deployment: Deployment, masters: IssuerMasters, picker: Picker, rig: Rig, generation: int
) -> None:
    """The whole flow (9301, EXTERNAL AUTH on generation 3, INTERNAL AUTH, EF06, PIN,
    1101 by card) answers the holder, and the engine counted a card success."""
    i = picker.index(usable(generation))
    card = insert(rig, deployment, masters, i, CardMode.genuine)
    status, body = await rig.post("/v1/person-info", {"pin": card.pin})
    assert status == 200, body
    person = deployment.pop.persons[i]
    assert body["person"]["baseinfo"]["psn_no"] == person.psn_no
    assert body["holder"]["certno"] == person.certno and body["holder"]["name"] == person.psn_name
    assert body["card"]["card_no"] == card.card_no and body["card"]["generation"] == generation
    assert body["pin_verified"] is True
    status, read = await rig.post("/v1/card")
    assert status == 200 and read["card"]["card_sn"] == card.card_sn
    # EF06 needs the engine's external-auth cryptogram on generation 3 only.
    assert (read["holder"] is None) == (generation == 3)


async def test_card_patient_visit_settles_after_the_agent_identified_them(
    deployment: Deployment, masters: IssuerMasters, picker: Picker, rig: Rig
) -> None:
    """The HIS asks the agent (card + PIN), then settles the visit with the card as
    credential (mdtrt_cert_type 03, card number) — the money identities hold."""
    i = picker.index(usable(3))
    card = insert(rig, deployment, masters, i, CardMode.genuine)
    status, body = await rig.post("/v1/person-info", {"pin": card.pin})
    assert status == 200, body
    client = rig.agent.client
    visit = await open_visit(client, deployment.pop.persons[i], KNOWN_VISIT[:2])
    data = visit.settle_data(mdtrt_cert_type="03", mdtrt_cert_no=card.card_no)
    out = await client.settle(visit.region, data)
    assert out.setlinfo.psn_no == body["person"]["baseinfo"]["psn_no"]
    assert_identities(out.setlinfo)
    assert (await deployment.ledger()).balanced


async def test_clone_is_refused_by_the_engine_as_cryptogram_mismatch(
    deployment: Deployment, masters: IssuerMasters, picker: Picker, rig: Rig
) -> None:
    """Generation 2 (no external authentication to trip over first): the clone's
    INTERNAL AUTHENTICATE answer does not verify in the engine's HSM."""
    insert(rig, deployment, masters, picker.index(usable(2)), CardMode.clone)
    status, body = await rig.post("/v1/person-info")
    assert status == 422
    assert body["error"]["source"] == "engine"
    assert body["error"]["code"] == ResultCode.card_cryptogram_mismatch


async def test_generation_3_clone_fails_the_cards_own_external_authentication(
    deployment: Deployment, masters: IssuerMasters, picker: Picker, rig: Rig
) -> None:
    """A generation-3 clone holds wrong external-auth keys, so the engine's genuine
    cryptogram does not open its EF06: the card itself refuses (terminal code
    -25538..-25536, tries left in the name)."""
    insert(rig, deployment, masters, picker.index(usable(3)), CardMode.clone)
    status, body = await rig.post("/v1/person-info")
    assert status == 422 and body["error"]["source"] == "card"
    assert -25538 <= body["error"]["code"] <= -25536


async def test_replayed_challenge_is_refused(
    deployment: Deployment, masters: IssuerMasters, picker: Picker, rig: Rig
) -> None:
    """An eavesdropper replaying the agent's 1101 (same challenge and cryptogram) is
    refused: the challenge was burned by the first use."""
    sent: list[tuple[Any, ...]] = []
    client: Client = rig.agent.client
    original = client.person_info_by_card

    async def recording(*args: Any, **kwargs: Any) -> Any:
        sent.append((args, kwargs))
        return await original(*args, **kwargs)

    client.person_info_by_card = recording  # type: ignore[method-assign]
    insert(rig, deployment, masters, picker.index(usable(3)), CardMode.genuine)
    status, _ = await rig.post("/v1/person-info")
    assert status == 200 and len(sent) == 1
    args, kwargs = sent[0]
    with pytest.raises(Exception) as err:
        await original(*args, **kwargs)
    assert getattr(err.value, "code", None) == ResultCode.card_challenge_already_used


async def test_wrong_pin_then_blocked_card_are_card_refusals(
    deployment: Deployment, masters: IssuerMasters, picker: Picker, rig: Rig
) -> None:
    card = insert(rig, deployment, masters, picker.index(usable(3)), CardMode.genuine)
    wrong = "000000" if card.pin != "000000" else "111111"
    status, body = await rig.post("/v1/person-info", {"pin": wrong})
    assert status == 422 and body["error"]["result"] == "pin_verify_failed"
    insert(rig, deployment, masters, picker.index(usable(3)), CardMode.pin_blocked)
    status, body = await rig.post("/v1/person-info", {"pin": "123456"})
    assert status == 422 and body["error"]["result"] == "pin_locked"


async def test_expired_card_on_the_chip_is_refused(
    deployment: Deployment, masters: IssuerMasters, picker: Picker, rig: Rig
) -> None:
    """The population's expired cards are also expired in the issuer's record."""
    expired = picker.index(lambda c: c.expiry_date < dt.date.today() and c.status == "active")
    insert(rig, deployment, masters, expired, CardMode.genuine)
    status, body = await rig.post("/v1/person-info")
    assert status == 422 and body["error"]["code"] == ResultCode.card_expired


async def test_no_card_and_removal_events(
    deployment: Deployment, masters: IssuerMasters, picker: Picker, rig: Rig
) -> None:
    status, body = await rig.post("/v1/person-info")
    assert status == 422 and body["error"]["result"] == "no_card"
    insert(rig, deployment, masters, picker.index(usable(2)), CardMode.genuine)
    resp = await rig.http.get("/v1/events", params={"after": "0", "wait_s": "5"})
    batch = await resp.json()
    assert [e["kind"] for e in batch["events"]] == ["card_inserted"]
    rig.reader.remove()
    resp = await rig.http.get("/v1/events", params={"after": str(batch["last_seq"]), "wait_s": "5"})
    assert [e["kind"] for e in (await resp.json())["events"]] == ["card_removed"]
    status_resp = await rig.http.get("/v1/status")
    assert (await status_resp.json())["card_present"] is False


async def test_requests_from_web_pages_and_bad_bodies_are_refused(rig: Rig) -> None:
    resp = await rig.http.post("/v1/person-info", data="{}", headers={"Origin": "http://evil"})
    assert resp.status == 403
    resp = await rig.http.post("/v1/person-info", data="{}", headers={"Content-Type": "text/plain"})
    assert resp.status == 415
    status, body = await rig.post("/v1/person-info", {"pin": "12"})
    assert status == 400 and "pin" in body["error"]["message"]
    status, body = await rig.post("/v1/person-info", {"pan": "1"})
    assert status == 400 and "pan" in body["error"]["message"]
    resp = await rig.http.get("/v1/events", params={"after": "x"})
    assert resp.status == 400
