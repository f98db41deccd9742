"""A kiosk-ready agent (issue 11 point 5), through the real agent HTTP app, a real
pcscd with the virtual card in the vpcd reader and a real engine process:

- flows that find the reader busy wait in a short queue and are then answered
  503 `agent_busy` with Retry-After: a full queue at once, a long wait after
  queue_wait_s;
- a hung engine (a TCP server that accepts and never answers) is answered 503
  `engine_timeout` within the agent's engine budget or the request's `deadline_s`,
  and /v1/status reports it unreachable within the probe's timeout;
- `POST /v1/ecard` identifies an e-card holder with the agent's terminal key and
  passes the engine's card proof through as `cred_ref` / `cred_expires_at`.

The slow card is the genuine virtual card taking its time over INTERNAL
AUTHENTICATE, as a slow chip does: it keeps a flow on the reader long enough for the
next ones to queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from card.icc import Icc
from simulators.card.factory import build_card
from simulators.card.keys import IssuerMasters
from simulators.ecard import EcardPlatform, platform_from_env
from simulators.pcscd import PcscdManager
from simulators.population import Card
from terminals.client import Client
from tests.e2e.conftest import Deployment, deployment  # noqa: F401  (fixture)
from tests.e2e.test_card_agent import (
    Answer,
    Picker,
    challenges_for,
    masters,  # noqa: F401  (fixture)
    pcsc_rig,
    picker,  # noqa: F401  (fixture)
    usable,
)
from tests.pcsc_support import InsertCard
from tests.support import hsm_env

pytestmark = pytest.mark.slow

INTERNAL_AUTHENTICATE = 0x88
SLOW_CARD_S = 0.8
SLACK_S = 0.6  # scheduling, the card steps, the answer


class SlowCard:
    """A card that takes SLOW_CARD_S over INTERNAL AUTHENTICATE (vpicc thread)."""

    def __init__(self, icc: Icc) -> None:
        self._icc = icc

    @property
    def atr(self) -> bytes:
        return self._icc.atr

    def power_on(self) -> bytes:
        return self._icc.power_on()

    def power_off(self) -> None:
        self._icc.power_off()

    def transmit(self, command: bytes) -> bytes:
        if len(command) > 1 and command[1] == INTERNAL_AUTHENTICATE:
            time.sleep(SLOW_CARD_S)
        return self._icc.transmit(command)


def insert(
    d: Deployment,
    masters: IssuerMasters,  # noqa: F811
    insert_card: InsertCard,
    picker: Picker,  # noqa: F811
    *,
    slow: bool = False,
) -> Card:
    i = picker.index(usable(3))
    card = d.pop.card(i)
    icc = build_card(card, d.pop.persons[i], masters)
    insert_card(SlowCard(icc) if slow else icc)
    return card


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < end, "condition not reached"
        await asyncio.sleep(0.01)


async def test_concurrent_flows_queue_and_then_get_busy_with_retry_after(
    deployment: Deployment,  # noqa: F811
    masters: IssuerMasters,  # noqa: F811
    picker: Picker,  # noqa: F811
    insert_card: InsertCard,
    pcscd: PcscdManager,
    tmp_path: Path,
) -> None:
    card = insert(deployment, masters, insert_card, picker, slow=True)
    body = {"pin": card.pin}
    url = deployment.engine.url
    async with (
        deployment.client() as client,
        pcsc_rig(
            pcscd.readers[0], client, url, tmp_path, require_pin=True, queue_max=1, queue_wait_s=5
        ) as rig,
    ):
        first = asyncio.create_task(rig.post("/v1/person-info", body))
        await until(lambda: rig.agent.busy)
        second = asyncio.create_task(rig.post("/v1/person-info", body))
        await until(lambda: rig.agent.queued == 1)
        status = await rig.get("/v1/status")
        assert status.body["busy"] is True and status.body["queued"] == 1
        started = time.monotonic()
        third = await rig.post("/v1/person-info", body)  # the queue is full: at once
        assert time.monotonic() - started < SLOW_CARD_S
        assert third.status == 503 and third.result == "agent_busy"
        assert third.headers["Retry-After"].isdigit()
        answers: tuple[Answer, Answer] = await asyncio.gather(first, second)
        assert [a.status for a in answers] == [200, 200], [a.body for a in answers]
    async with (
        deployment.client() as client,
        pcsc_rig(
            pcscd.readers[0], client, url, tmp_path, require_pin=True, queue_wait_s=0.2
        ) as impatient,
    ):
        first = asyncio.create_task(impatient.post("/v1/person-info", body))
        await until(lambda: impatient.agent.busy)
        started = time.monotonic()
        waited = await impatient.post("/v1/person-info", body)
        assert 0.2 <= time.monotonic() - started < SLOW_CARD_S
        assert waited.status == 503 and waited.result == "agent_busy"
        assert "Retry-After" in waited.headers
        assert (await first).status == 200


@contextlib.asynccontextmanager
async def hung_engine() -> AsyncIterator[str]:
    """A TCP server that accepts every connection and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_hung_engine_is_answered_503_within_the_deadline(
    deployment: Deployment,  # noqa: F811
    masters: IssuerMasters,  # noqa: F811
    picker: Picker,  # noqa: F811
    insert_card: InsertCard,
    pcscd: PcscdManager,
    tmp_path: Path,
) -> None:
    card = insert(deployment, masters, insert_card, picker)
    async with (
        hung_engine() as url,
        Client(url, deployment.credentials(deployment.hospital())) as client,
        pcsc_rig(
            pcscd.readers[0], client, url, tmp_path, require_pin=True, engine_timeout_s=1.5
        ) as rig,
    ):
        cases: list[tuple[dict[str, object], float]] = [
            ({"pin": card.pin}, 1.5),  # the agent's own budget (--engine-timeout-s)
            ({"pin": card.pin, "deadline_s": 0.5}, 0.5),  # the kiosk's, per request
        ]
        for body, deadline_s in cases:
            started = time.monotonic()
            got = await rig.post("/v1/person-info", body)
            elapsed_s = time.monotonic() - started
            assert got.status == 503 and got.result == "engine_timeout", got.body
            assert deadline_s <= elapsed_s < deadline_s + SLACK_S
            assert "Retry-After" in got.headers
        # Signed in earlier (as a terminal that already had its day): the card is read
        # and the hang is at 9301; still within the budget, still no PIN try spent.
        client.sign_no = "signed-in-before-the-engine-hung"
        started = time.monotonic()
        got = await rig.post("/v1/person-info", {"pin": card.pin, "deadline_s": 0.5})
        assert got.status == 503 and got.result == "engine_timeout"
        assert time.monotonic() - started < 0.5 + SLACK_S
        started = time.monotonic()
        status = await rig.get("/v1/status")
        assert time.monotonic() - started < 1.0 + SLACK_S
        assert status.body["engine"]["reachable"] is False
        assert status.body["engine"]["error"].startswith("timeout")
        for bad in (0.01, 31, "soon"):
            got = await rig.post("/v1/person-info", {"pin": card.pin, "deadline_s": bad})
            assert got.status == 400 and "deadline_s" in got.body["error"]["message"]
    assert await challenges_for(deployment, card) == 0


@pytest.fixture(scope="module")
def platform(deployment: Deployment) -> EcardPlatform:  # noqa: F811
    return platform_from_env(hsm_env(deployment.engine.log_path.parent))


async def test_ecard_endpoint_identifies_with_the_agents_key_and_passes_the_proof(
    deployment: Deployment,  # noqa: F811
    platform: EcardPlatform,
    pcscd: PcscdManager,
    tmp_path: Path,
) -> None:
    person = deployment.person()
    issued = await platform.issue(person)
    async with (
        deployment.client() as client,
        pcsc_rig(pcscd.readers[0], client, deployment.engine.url, tmp_path) as rig,
    ):
        got = await rig.post("/v1/ecard", {"qr": issued.qr})
        assert got.status == 200, got.body
        assert got.body["person"]["baseinfo"]["psn_no"] == person.psn_no
        assert len(got.body["cred_ref"]) == 32
        dt.datetime.strptime(got.body["cred_expires_at"], "%Y-%m-%d %H:%M:%S")  # wire time
        again = await rig.post("/v1/ecard", {"qr": issued.qr})
        assert again.status == 422 and again.result == "ecard_token_already_used"
        assert again.body["error"]["source"] == "engine"
        for body, field in (({"qr": "YKEC1.nope"}, "qr"), ({}, "qr"), ({"qr": 5}, "qr")):
            bad = await rig.post("/v1/ecard", body)
            assert bad.status == 400 and field in bad.body["error"]["message"], bad.body
        anonymous = await rig.post("/v1/ecard", {"qr": issued.qr}, auth=False)
        assert anonymous.status == 401
