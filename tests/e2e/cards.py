"""Cards of the e2e deployment's population and the card agent's part of 1101 by card,
computed the way the card computes it: the card's keys are diversified from the issuer
masters in the same key file the engine's HSM opens (simulators.card.keys) and the
answer is hsm.cardauth's internal-auth cryptogram."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable

from hsm.cardauth import internal_auth_cryptogram
from simulators.card.keys import CardKeys, IssuerMasters, card_keys
from simulators.population import Card, Person
from terminals.client import Client
from terminals.messages.card import person_info as person_info_msg
from tests.e2e.conftest import Deployment
from tests.support import hsm_env


class Cards:
    """Hands out cards of the deployment's population that no other test used."""

    def __init__(self, d: Deployment, masters: IssuerMasters) -> None:
        self.d = d
        self.masters = masters
        self._used: set[int] = set()

    def take(self, want: Callable[[Card], bool]) -> tuple[Card, Person, CardKeys]:
        for i, person in enumerate(self.d.pop.persons):
            card = self.d.pop.card(i)
            if i not in self._used and want(card):
                self._used.add(i)
                return card, person, card_keys(self.masters, card)
        raise AssertionError("no such card in the population")

    def good(self, generation: int = 3) -> tuple[Card, Person, CardKeys]:
        return self.take(lambda c: c.generation == generation and usable(c))


def usable(card: Card) -> bool:
    return card.usable_on(dt.date.today())


def deployment_cards(deployment: Deployment) -> Cards:
    """The deployment's cards, with the issuer masters of the key file its engine opened."""
    env = hsm_env(deployment.engine.log_path.parent)
    return Cards(deployment, IssuerMasters.from_env(env))


async def present(
    client: Client,
    card: Card,
    person: Person,
    keys: CardKeys,
    *,
    challenge: bytes | None = None,
    card_no: str | None = None,
    certno: str | None = None,
    psn_name: str | None = None,
) -> person_info_msg.Output:
    """What the card agent does: 9301 (unless a challenge is given), INTERNAL
    AUTHENTICATE with the card's key, 1101 by card with EF06's certno and name."""
    if challenge is None:
        challenge = bytes.fromhex((await client.card_challenge(card.card_sn)).challenge)
    process_factor = os.urandom(8)
    cryptogram = internal_auth_cryptogram(keys.internal_auth, process_factor, challenge)
    return await client.person_info_by_card(
        card.card_no if card_no is None else card_no,
        card.card_sn,
        challenge,
        process_factor,
        cryptogram,
        certno=person.certno if certno is None else certno,
        psn_name=person.psn_name if psn_name is None else psn_name,
    )
