"""PINs that count (issue 11 point 2), through the real agent HTTP app, a real pcscd
with the virtual card in the vpcd reader and a real engine process:

- wrong PINs stop before the card blocks: at one try left the kiosk's agent sends no
  VERIFY (`pin_last_try`, tries_left 1), the card is still usable, and the staffed
  counter's agent (`allow_last_pin_try`) takes the right PIN, which resets the count;
- tries left travel as a JSON field;
- an expired chip and a revoked card cost no PIN try: expiry is read from EF05 before
  any challenge, revocation is the engine's 1101 verdict before VERIFY;
- a PIN that is not 4..16 ASCII digits (Arabic-Indic, full-width, letters) is refused
  before any card or engine work: no 9301 reached the engine.

The card's own try counter is read directly (VERIFY without data through a PcscReader
of our own) to prove what the agent did not send.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from card.pcsc import PcscReader
from card.ssse import CardSession
from simulators.card.app import CardMode
from simulators.card.factory import build_card
from simulators.card.keys import IssuerMasters
from simulators.pcscd import PcscdManager
from simulators.population import Card
from terminals.results import ResultCode
from tests.e2e.conftest import Deployment, deployment  # noqa: F401  (fixture)
from tests.e2e.test_card_agent import (
    AgentRig,
    Picker,
    challenges_for,
    masters,  # noqa: F401  (fixture)
    pcsc_rig,
    picker,  # noqa: F401  (fixture)
    usable,
    wrong_pin,
)
from tests.pcsc_support import InsertCard

pytestmark = pytest.mark.slow


@pytest.fixture
async def kiosk(
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


def tries_left(reader_name: str) -> int:
    """The card's PIN try counter, asked without trying (VERIFY with no data)."""
    with PcscReader(reader_name) as reader:
        session = CardSession(reader)
        try:
            session.open()
            return session.pin_tries_left()
        finally:
            session.close()


def insert(
    d: Deployment,
    masters: IssuerMasters,  # noqa: F811
    insert_card: InsertCard,
    index: int,
    mode: CardMode = CardMode.genuine,
) -> Card:
    card = d.pop.card(index)
    insert_card(build_card(card, d.pop.persons[index], masters, mode))
    return card


async def test_wrong_pins_stop_before_the_last_try_and_the_card_stays_usable(
    deployment: Deployment,  # noqa: F811
    masters: IssuerMasters,  # noqa: F811
    picker: Picker,  # noqa: F811
    insert_card: InsertCard,
    pcscd: PcscdManager,
    kiosk: AgentRig,
    tmp_path: Path,
) -> None:
    i = picker.index(usable(3))
    card = insert(deployment, masters, insert_card, i)
    reader = pcscd.readers[0]
    for left in (2, 1):
        got = await kiosk.post("/v1/person-info", {"pin": wrong_pin(card)})
        assert got.status == 422 and got.result == "pin_verify_failed", got.body
        assert got.body["error"]["source"] == "card" and got.body["error"]["tries_left"] == left
    for pin in (wrong_pin(card), card.pin):  # the guard sends neither
        got = await kiosk.post("/v1/person-info", {"pin": pin})
        assert got.status == 422 and got.result == "pin_last_try", got.body
        assert got.body["error"]["source"] == "agent" and got.body["error"]["tries_left"] == 1
        assert "person" not in got.body and "holder" not in got.body
    assert tries_left(reader) == 1  # not blocked
    # The staffed counter's agent may use the last try; the right PIN resets the count.
    async with (
        deployment.client() as client,
        pcsc_rig(
            reader,
            client,
            deployment.engine.url,
            tmp_path,
            require_pin=True,
            allow_last_pin_try=True,
        ) as counter,
    ):
        got = await counter.post("/v1/person-info", {"pin": card.pin})
        assert got.status == 200 and got.body["pin_verified"] is True, got.body
    assert tries_left(reader) == 3
    got = await kiosk.post("/v1/person-info", {"pin": card.pin})
    assert got.status == 200, got.body
    assert got.body["person"]["baseinfo"]["psn_no"] == deployment.pop.persons[i].psn_no


async def test_blocked_pin_is_reported_with_no_tries_left(
    deployment: Deployment,  # noqa: F811
    masters: IssuerMasters,  # noqa: F811
    picker: Picker,  # noqa: F811
    insert_card: InsertCard,
    kiosk: AgentRig,
) -> None:
    card = insert(deployment, masters, insert_card, picker.index(usable(2)), CardMode.pin_blocked)
    got = await kiosk.post("/v1/person-info", {"pin": card.pin})
    assert got.status == 422 and got.result == "pin_locked"
    assert got.body["error"]["tries_left"] == 0 and "person" not in got.body


async def test_expired_chip_costs_no_pin_try_and_no_challenge(
    deployment: Deployment,  # noqa: F811
    masters: IssuerMasters,  # noqa: F811
    picker: Picker,  # noqa: F811
    insert_card: InsertCard,
    pcscd: PcscdManager,
    kiosk: AgentRig,
) -> None:
    """Virtual card mode `expired`: the issuer's record is current, the chip's EF05
    expiry date has passed — the agent refuses from EF05, before 9301 and VERIFY."""
    card = insert(deployment, masters, insert_card, picker.index(usable(3)), CardMode.expired)
    for _ in range(3):
        got = await kiosk.post("/v1/person-info", {"pin": wrong_pin(card)})
        assert got.status == 422 and got.result == "card_expired", got.body
        assert got.body["error"]["source"] == "card"
    assert tries_left(pcscd.readers[0]) == 3
    assert await challenges_for(deployment, card) == 0


async def test_revoked_card_is_refused_by_the_engine_before_the_pin_is_tried(
    deployment: Deployment,  # noqa: F811
    masters: IssuerMasters,  # noqa: F811
    picker: Picker,  # noqa: F811
    insert_card: InsertCard,
    pcscd: PcscdManager,
    kiosk: AgentRig,
) -> None:
    today = dt.date.today()
    i = picker.index(lambda c: c.status == "revoked" and c.expiry_date >= today)
    card = insert(deployment, masters, insert_card, i)
    for _ in range(3):
        got = await kiosk.post("/v1/person-info", {"pin": wrong_pin(card)})
        assert got.status == 422 and got.body["error"]["source"] == "engine", got.body
        assert got.body["error"]["code"] == ResultCode.card_revoked
    assert tries_left(pcscd.readers[0]) == 3


@pytest.mark.parametrize(
    "pin",
    [
        "١٢٣٤",  # Arabic-Indic digits: str.isdigit() is True
        "۱۲۳۴۵۶",  # Extended Arabic-Indic
        "１２３４５６",  # full-width
        "12a4",
        "123",
        "12345678901234567",
        "",
    ],
)
async def test_a_pin_that_is_not_ascii_digits_is_refused_before_any_work(
    deployment: Deployment,  # noqa: F811
    masters: IssuerMasters,  # noqa: F811
    picker: Picker,  # noqa: F811
    insert_card: InsertCard,
    pcscd: PcscdManager,
    kiosk: AgentRig,
    pin: str,
) -> None:
    card = insert(deployment, masters, insert_card, picker.index(usable(3)))
    got = await kiosk.post("/v1/person-info", {"pin": pin})
    assert got.status == 400 and got.result == "field_invalid", got.body
    assert "pin" in got.body["error"]["message"] and "ASCII" in got.body["error"]["message"]
    assert await challenges_for(deployment, card) == 0  # the engine saw no 9301
    assert tries_left(pcscd.readers[0]) == 3
