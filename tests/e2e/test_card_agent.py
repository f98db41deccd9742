"""The card agent end to end: its localhost HTTP API (with its bearer token, loopback
Host and origin checks), a virtual card (both applications, keys diversified from the
issuer masters in the key file the engine's HSM opened) in an in-memory reader, and a
real engine process with its database.

The reader is in memory here so that this module does not need pcscd; the same
agent code over PcscReader and vpcd is exercised in tests/integration/test_pcsc_agent
and tests/integration/test_agent_*.py, which reuse the rig defined here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from card.memory import MemoryReader
from card.pcsc import PcscReader
from card.reader import Reader
from simulators.card.app import CardMode
from simulators.card.factory import build_card
from simulators.card.keys import IssuerMasters
from simulators.population import Card
from terminals.agent.access import AccessPolicy
from terminals.agent.core import CardAgent
from terminals.agent.http import AgentApp
from terminals.agent.token import load_or_create_token
from terminals.client import Client
from terminals.results import ResultCode
from tests.e2e.conftest import Deployment
from tests.e2e.helpers import assert_identities, open_visit
from tests.e2e.test_outpatient_flow import KNOWN_VISIT
from tests.support import hsm_env

pytestmark = pytest.mark.slow

KIOSK_ORIGIN = "https://kiosk.example"

# -- the rig (shared with tests/integration/test_agent_*.py) ---------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: Any

    @property
    def result(self) -> str | None:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return None if error is None else error["result"]


class AgentRig:
    """The agent's HTTP app on a real loopback socket, and a client that sends the
    install's bearer token unless told not to."""

    def __init__(
        self, http: TestClient[web.Request, web.Application], agent: CardAgent, token: str
    ) -> None:
        self.http = http
        self.agent = agent
        self.token = token

    @property
    def port(self) -> int:
        port = self.http.port
        assert port is not None
        return port

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        params: dict[str, str] | None = None,
    ) -> Answer:
        sent = {"Authorization": f"Bearer {self.token}"} if auth else {}
        sent.update(headers or {})
        data = None
        if method == "POST":
            sent.setdefault("Content-Type", "application/json")
            data = body if isinstance(body, bytes | str) else msgspec.json.encode(body or {})
        resp = await self.http.request(method, path, data=data, headers=sent, params=params)
        raw = await resp.read()
        parsed = msgspec.json.decode(raw) if resp.content_type == "application/json" else raw
        return Answer(resp.status, parsed, resp.headers)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Answer:
        return await self.call("POST", path, body, **kw)

    async def get(self, path: str, **kw: Any) -> Answer:
        return await self.call("GET", path, **kw)


@contextlib.asynccontextmanager
async def agent_rig(
    reader: Reader,
    client: Client,
    engine_url: str,
    token_dir: Path,
    *,
    watch_reader: Reader | None = None,
    allow_origins: Iterable[str] = (KIOSK_ORIGIN,),
    **agent_options: Any,
) -> AsyncIterator[AgentRig]:
    token = load_or_create_token(token_dir / "agent.token")
    agent = CardAgent(reader, client, **agent_options)
    access = AccessPolicy.build(token.value, allow_origins=allow_origins)
    app = AgentApp(agent, access=access, engine_url=engine_url, watch_reader=watch_reader)
    async with TestClient(TestServer(app.build(), host="127.0.0.1")) as http:
        yield AgentRig(http, agent, token.value)


@contextlib.asynccontextmanager
async def pcsc_rig(
    reader_name: str, client: Client, engine_url: str, token_dir: Path, **options: Any
) -> AsyncIterator[AgentRig]:
    """The agent as `yikatong agent` wires it: one PcscReader for the card flow, a
    second one for the presence watcher."""
    card_reader, watch_reader = PcscReader(reader_name), PcscReader(reader_name)
    try:
        async with agent_rig(
            card_reader, client, engine_url, token_dir, watch_reader=watch_reader, **options
        ) as rig:
            yield rig
    finally:
        card_reader.close()
        watch_reader.close()


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


def wrong_pin(card: Card) -> str:
    return "000000" if card.pin != "000000" else "111111"


async def challenges_for(d: Deployment, card: Card) -> object:
    """9301 challenges the engine issued for this card (none is deleted within a test:
    the purge only takes rows past their 60 s)."""
    return await d.fetchval("SELECT count(*) FROM card_challenges WHERE card_sn = $1", card.card_sn)


@pytest.fixture(scope="module")
def masters(deployment: Deployment) -> IssuerMasters:
    env = hsm_env(deployment.engine.log_path.parent)
    return IssuerMasters.from_env(env)


@pytest.fixture(scope="module")
def picker(deployment: Deployment) -> Picker:
    return Picker(deployment)


# -- this module: the in-memory reader ---------------------------------------------------


class MemoryRig(AgentRig):
    def __init__(self, base: AgentRig, reader: MemoryReader) -> None:
        super().__init__(base.http, base.agent, base.token)
        self.reader = reader


@pytest.fixture
async def rig(deployment: Deployment, tmp_path: Path) -> AsyncIterator[MemoryRig]:
    """A kiosk agent (require-PIN mode) over an in-memory reader."""
    reader = MemoryReader(name="counter 1")
    async with (
        deployment.client() as client,
        agent_rig(reader, client, deployment.engine.url, tmp_path, require_pin=True) as base,
    ):
        yield MemoryRig(base, reader)


def insert(
    rig: MemoryRig, d: Deployment, masters: IssuerMasters, index: int, mode: CardMode
) -> Card:
    card = d.pop.card(index)
    rig.reader.insert(build_card(card, d.pop.persons[index], masters, mode))
    return card


@pytest.mark.parametrize("generation", [2, 3])
async def test_genuine_card_identifies_its_holder_through_the_agent_with_pin(
    deployment: Deployment, masters: IssuerMasters, picker: Picker, rig: MemoryRig, generation: int
) -> None:
    """The whole flow (9301, EXTERNAL AUTH on generation 3, INTERNAL AUTH, EF06, 1101
    by card, then the PIN) answers the holder and the engine's card proof."""
    i = picker.index(usable(generation))
    card = insert(rig, deployment, masters, i, CardMode.genuine)
    got = await rig.post("/v1/person-info", {"pin": card.pin})
    assert got.status == 200, got.body
    person = deployment.pop.persons[i]
    assert got.body["person"]["baseinfo"]["psn_no"] == person.psn_no
    assert got.body["holder"]["certno"] == person.certno
    assert got.body["holder"]["name"] == person.psn_name
    assert got.body["card"]["card_no"] == card.card_no
    assert got.body["card"]["generation"] == generation
    assert got.body["pin_verified"] is True
    assert len(got.body["cred_ref"]) == 32 and got.body["cred_expires_at"]
    assert "yk_card_proof" not in got.body["person"]
    read = await rig.post("/v1/card")
    assert read.status == 200 and read.body["card"]["card_sn"] == card.card_sn
    # Require-PIN mode: EF06 is not read without a PIN, even where the card allows it.
    assert read.body["holder"] is None and read.body["holder_withheld"] is True


async def test_card_patient_visit_settles_with_the_agents_card_proof(
    deployment: Deployment, masters: IssuerMasters, picker: Picker, rig: MemoryRig
) -> None:
    """The HIS asks the agent (card + PIN), then settles the visit with the card as
    credential (mdtrt_cert_type 03, card number) and the agent's `cred_ref` as
    yk_cred_ref — the money identities hold."""
    i = picker.index(usable(3))
    card = insert(rig, deployment, masters, i, CardMode.genuine)
    got = await rig.post("/v1/person-info", {"pin": card.pin})
    assert got.status == 200, got.body
    client = rig.agent.client
    visit = await open_visit(client, deployment.pop.persons[i], KNOWN_VISIT[:2])
    data = visit.settle_data(
        mdtrt_cert_type="03", mdtrt_cert_no=card.card_no, yk_cred_ref=got.body["cred_ref"]
    )
    out = await client.settle(visit.region, data)
    assert out.setlinfo.psn_no == got.body["person"]["baseinfo"]["psn_no"]
    assert_identities(out.setlinfo)
    assert (await deployment.ledger()).balanced


async def test_clone_is_refused_by_the_engine_as_cryptogram_mismatch(
    deployment: Deployment, masters: IssuerMasters, picker: Picker, rig: MemoryRig
) -> None:
    """Generation 2 (no external authentication to trip over first): the clone's
    INTERNAL AUTHENTICATE answer does not verify in the engine's HSM."""
    card = insert(rig, deployment, masters, picker.index(usable(2)), CardMode.clone)
    got = await rig.post("/v1/person-info", {"pin": card.pin})
    assert got.status == 422
    assert got.body["error"]["source"] == "engine"
    assert got.body["error"]["code"] == ResultCode.card_cryptogram_mismatch


async def test_generation_3_clone_fails_the_cards_own_external_authentication(
    deployment: Deployment, masters: IssuerMasters, picker: Picker, rig: MemoryRig
) -> None:
    """A generation-3 clone holds wrong external-auth keys, so the engine's genuine
    cryptogram does not open its EF06: the card itself refuses (terminal code
    -25538..-25536, tries left in the name)."""
    card = insert(rig, deployment, masters, picker.index(usable(3)), CardMode.clone)
    got = await rig.post("/v1/person-info", {"pin": card.pin})
    assert got.status == 422 and got.body["error"]["source"] == "card"
    assert -25538 <= got.body["error"]["code"] <= -25536


async def test_replayed_challenge_is_refused(
    deployment: Deployment, masters: IssuerMasters, picker: Picker, rig: MemoryRig
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
    card = insert(rig, deployment, masters, picker.index(usable(3)), CardMode.genuine)
    got = await rig.post("/v1/person-info", {"pin": card.pin})
    assert got.status == 200 and len(sent) == 1
    args, kwargs = sent[0]
    with pytest.raises(Exception) as err:
        await original(*args, **kwargs)
    assert getattr(err.value, "code", None) == ResultCode.card_challenge_already_used


async def test_wrong_pin_then_blocked_card_are_card_refusals_with_tries_left(
    deployment: Deployment, masters: IssuerMasters, picker: Picker, rig: MemoryRig
) -> None:
    card = insert(rig, deployment, masters, picker.index(usable(3)), CardMode.genuine)
    got = await rig.post("/v1/person-info", {"pin": wrong_pin(card)})
    assert got.status == 422 and got.result == "pin_verify_failed"
    assert got.body["error"]["tries_left"] == 2
    assert "person" not in got.body
    insert(rig, deployment, masters, picker.index(usable(3)), CardMode.pin_blocked)
    got = await rig.post("/v1/person-info", {"pin": "123456"})
    assert got.status == 422 and got.result == "pin_locked"
    assert got.body["error"]["tries_left"] == 0


async def test_expired_card_is_refused_from_its_chip_before_any_challenge(
    deployment: Deployment, masters: IssuerMasters, picker: Picker, rig: MemoryRig
) -> None:
    """The population's expired cards are also expired on the chip (EF05): the agent
    refuses them itself, and the engine never issued a challenge for them."""
    expired = picker.index(lambda c: c.expiry_date < dt.date.today() and c.status == "active")
    card = insert(rig, deployment, masters, expired, CardMode.genuine)
    got = await rig.post("/v1/person-info", {"pin": card.pin})
    assert got.status == 422 and got.result == "card_expired"
    assert got.body["error"]["source"] == "card"
    assert await challenges_for(deployment, card) == 0


async def test_no_card_and_removal_events(
    deployment: Deployment, masters: IssuerMasters, picker: Picker, rig: MemoryRig
) -> None:
    got = await rig.post("/v1/person-info", {"pin": "123456"})
    assert got.status == 422 and got.result == "no_card"
    insert(rig, deployment, masters, picker.index(usable(2)), CardMode.genuine)
    first = await rig.get("/v1/events", params={"after": "0", "wait_s": "5"})
    assert [e["kind"] for e in first.body["events"]] == ["card_inserted"]
    rig.reader.remove()
    after = str(first.body["last_seq"])
    second = await rig.get("/v1/events", params={"after": after, "wait_s": "5"})
    assert [e["kind"] for e in second.body["events"]] == ["card_removed"]
    status = await rig.get("/v1/status")
    assert status.body["card_present"] is False


async def test_bad_bodies_are_refused_naming_the_field(rig: MemoryRig) -> None:
    got = await rig.post("/v1/person-info", "{}", headers={"Content-Type": "text/plain"})
    assert got.status == 415 and got.result == "content_type_refused"
    got = await rig.post("/v1/person-info", {"pin": "12"})
    assert got.status == 400 and "pin" in got.body["error"]["message"]
    got = await rig.post("/v1/person-info", {"pan": "1"})
    assert got.status == 400 and "pan" in got.body["error"]["message"]
    got = await rig.post("/v1/person-info", b"{not json")
    assert got.status == 400 and got.result == "body_malformed"
    got = await rig.post("/v1/person-info", {"pin": "1234", "deadline_s": 1000})
    assert got.status == 400 and "deadline_s" in got.body["error"]["message"]
    got = await rig.post("/v1/person-info", b"{" + b" " * 5000 + b"}")
    assert got.status == 413 and got.result == "body_too_large"
    got = await rig.get("/v1/events", params={"after": "x"})
    assert got.status == 400 and got.result == "field_invalid"
    got = await rig.get("/v1/nothing")
    assert got.status == 404 and got.result == "not_found"
    got = await rig.get("/v1/person-info")
    assert got.status == 405 and got.result == "method_not_allowed"


class CrashingReader(MemoryReader):
    """A reader driver with a bug: connect raises something that is not a ReaderError."""

    def connect(self, *, deadline_s: float) -> bytes:
        raise RuntimeError("driver bug")


async def test_a_bug_in_a_card_flow_is_a_json_500_with_its_audit_line(
    deployment: Deployment, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="terminals.agent.audit")
    async with (
        deployment.client() as client,
        agent_rig(CrashingReader(), client, deployment.engine.url, tmp_path) as crashing,
    ):
        got = await crashing.post("/v1/card")
    assert got.status == 500 and got.result == "internal_error"
    [line] = [r.fields for r in caplog.records if r.name == "terminals.agent.audit"]  # type: ignore[attr-defined]
    assert (line["event"], line["result"]) == ("card_flow", "internal_error")
