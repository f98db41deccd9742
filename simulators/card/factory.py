"""Build a virtual card for one person of the synthetic population."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from simulators.card.app import CardApplication, CardMode
from simulators.card.card import VirtualCard
from simulators.card.keys import IssuerMasters, card_keys, clone_keys
from simulators.card.pboc import PbocApplication
from simulators.card.ssse import SsseApplication
from simulators.population import Card, Person


def build_card(
    card: Card,
    person: Person,
    masters: IssuerMasters,
    mode: CardMode = CardMode.genuine,
    *,
    random_bytes: Callable[[int], bytes] = secrets.token_bytes,
) -> VirtualCard:
    """A chip personalised for `person` with `card`'s data. `random_bytes` feeds GET
    CHALLENGE and the unpredictable parts of the card (inject a seeded one to replay)."""
    keys = clone_keys(card, random_bytes) if mode is CardMode.clone else card_keys(masters, card)
    apps: list[CardApplication] = [
        SsseApplication(card, person, keys, mode, random_bytes=random_bytes),
        PbocApplication(card, person, keys, random_bytes=random_bytes),
    ]
    return VirtualCard(apps, generation=card.generation)
