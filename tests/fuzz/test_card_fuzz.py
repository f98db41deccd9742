"""Fuzzing the social security card at both ends.

- The virtual card (VirtualCard + SsseApplication) answers any byte string with a
  response of at least two bytes (SW1 SW2) and never raises, in any state it can reach.
- Random command sequences (valid-looking and garbage, with power-ons in between)
  leave the card answering: afterwards a fresh power-on still selects SSSE and reads
  EF05 correctly (a card must not wedge itself, whatever a terminal sent).
- The terminal's decoders (records, FCI, ATR, whole EF05/EF06) give a value or a
  CardError for any bytes, never another exception.

In-process and quick: no deployment is needed (the `deployment` fixture of this
folder's conftest is not requested here).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from card.apdu import CommandApdu, ResponseApdu
from card.results import CardError
from card.ssse import SSSE_AID, CardAlgorithm, decode_fci
from card.ssse_records import (
    EF05_TAGS,
    EF06_TAGS,
    atr_historical_bytes,
    decode_basics,
    decode_holder,
    decode_record,
)
from hsm.cardauth import external_auth_cryptogram
from hsm.keystore import KeyStore
from hsm.soft_admin import demo_hierarchy
from simulators.card.app import CardMode
from simulators.card.card import VirtualCard
from simulators.card.keys import IssuerMasters, card_keys
from simulators.card.ssse import SsseApplication
from simulators.population import Person, card_for

MASTERS = IssuerMasters.from_keystore(KeyStore(demo_hierarchy(random.Random(5).randbytes)))
PERSON = Person(
    "510100000000000003",
    "510100",
    "510104199001011234",
    "欧阳娜娜",
    "2",
    dt.date(1990, 1, 1),
    "390",
    False,
    dt.date(2012, 1, 1),
    "",
    0,
)
CARD = card_for(1, PERSON)  # generation 3: the RKSSSE rule is in play
KEYS = card_keys(MASTERS, CARD)
SELECT_SSSE = bytes.fromhex("00A404000F") + SSSE_AID
READ_CARD_SN_BY_SFI = bytes.fromhex("00B2012C12")


def new_chip(mode: CardMode = CardMode.genuine) -> VirtualCard:
    rng = random.Random(0)
    app = SsseApplication(CARD, PERSON, KEYS, mode, random_bytes=rng.randbytes)
    chip = VirtualCard([app], generation=CARD.generation)
    chip.power_on()
    return chip


# Instruction -> (class, P2 values it accepts); P1 values from P1 (00 when absent).
TEMPLATES = {
    0xA4: (0x00, [0x00, 0x0C]),
    0xB2: (0x00, [0x00, 0x04, 0x2C, 0x34]),
    0x84: (0x00, [0x00]),
    0x88: (0x00, [0x00]),
    0x82: (0x00, [0x0A]),
    0x20: (0x00, [0x00]),
    0x5E: (0x80, [0x00]),
    0xC0: (0x00, [0x00]),
    0x24: (0x84, [0x00]),  # UNBLOCK: not implemented, must still answer
}
P1 = {0xA4: [0x00, 0x02], 0x5E: [0x01], 0xB2: [0x01, 0x02, 0x03, 0x06, 0x07, 0x08, 0x09, 0x4E]}


@st.composite
def well_formed(draw: st.DrawFn) -> bytes:
    """Commands the SSSE application will act on: its instructions with their class
    and P1/P2 (now and then a wrong one), plausible data and Le. The garbage strategy
    below covers everything else."""
    ins = draw(st.sampled_from(sorted(TEMPLATES)))
    cla, p2s = TEMPLATES[ins]
    p1 = draw(st.sampled_from(P1.get(ins, [0x00])))
    p2 = draw(st.sampled_from(p2s))
    if draw(st.integers(0, 9)) == 0:  # one in ten: a wrong header byte
        cla, p1, p2 = draw(
            st.tuples(
                st.sampled_from([cla, 0x00, 0x80, 0x84]), st.integers(0, 255), st.integers(0, 255)
            )
        )
    data = draw(
        st.sampled_from(
            [b"", b"", b"\xef\x05", b"\xef\x06", b"\x12\x34\x56", b"\x12\x34\x56\xff\x65\x43\x21"]
        )
        | st.binary(min_size=16, max_size=16)
        | st.binary(max_size=24)
    )
    le = draw(st.sampled_from([None, None, 8, 0x12, 0x20, 256]) | st.integers(1, 256))
    return CommandApdu(cla, ins, p1, p2, data, le).encode()


garbage = st.builds(
    lambda head, body: head + body, st.binary(min_size=4, max_size=4), st.binary(max_size=12)
)
commands = well_formed() | garbage
POWER_ON = b""  # sequence steps that are not one command: a power-on,
AUTHENTICATE = b"auth"  # GET CHALLENGE + the right EXTERNAL AUTHENTICATE (unlocks EF06)
steps = commands | st.sampled_from([SELECT_SSSE, POWER_ON, AUTHENTICATE])

CHIP = new_chip()  # shared on purpose: its state drifts across examples


def _answers(chip: VirtualCard, raw: bytes) -> ResponseApdu:
    out = chip.transmit(raw)
    assert isinstance(out, bytes) and len(out) >= 2
    return ResponseApdu.decode(out)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_get_a_status_word(raw: bytes) -> None:
    _answers(CHIP, raw)


@settings(max_examples=600, deadline=None)
@given(commands)
def test_any_command_to_the_selected_ssse_gets_a_status_word(raw: bytes) -> None:
    _answers(CHIP, SELECT_SSSE)
    _answers(CHIP, raw)


@settings(max_examples=150, deadline=None)
@given(st.lists(steps, max_size=25), st.sampled_from(list(CardMode)))
def test_random_sequences_leave_the_card_answering(sequence: list[bytes], mode: CardMode) -> None:
    chip = new_chip(mode)
    for raw in sequence:
        if raw == POWER_ON:
            chip.power_on()
        elif raw == AUTHENTICATE:
            challenge = _answers(chip, bytes.fromhex("0084000008")).data
            if len(challenge) == 8:
                factor = bytes(8)
                cryptogram = external_auth_cryptogram(KEYS.external_auth, factor, challenge)
                _answers(chip, bytes.fromhex("008200 0A 10") + factor + cryptogram)
        else:
            _answers(chip, raw)
    chip.power_on()
    assert _answers(chip, SELECT_SSSE).ok
    record = _answers(chip, READ_CARD_SN_BY_SFI)
    assert record.ok and record.data == b"\x01\x10" + bytes.fromhex(CARD.card_sn)


def value_or_card_error(decode: Callable[[], object]) -> None:
    """The decoder returns or raises CardError; anything else fails the test."""
    with contextlib.suppress(CardError):
        decode()


GOOD_EF05 = {
    0x01: bytes.fromhex(CARD.card_sn),
    0x02: b"3",
    0x03: b"3.00",
    0x04: b"510100000000",
    0x05: bytes.fromhex("20200102"),
    0x06: bytes.fromhex("20300102"),
    0x07: b"S00000002",
}
GOOD_EF06 = {
    0x08: PERSON.certno.encode(),
    0x09: PERSON.psn_name.encode("gbk").ljust(30, b"\x00"),
    0x0A: b"2",
    0x0B: b"\x01",
    0x0C: bytes.fromhex("510104"),
    0x0D: bytes.fromhex("19900101"),
    0x4E: b"\x00" * 20,
}


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64), st.integers(0, 255))
def test_record_fci_and_atr_decoders_give_a_value_or_card_error(raw: bytes, tag: int) -> None:
    value_or_card_error(lambda: decode_record(raw, tag))
    value_or_card_error(lambda: decode_fci(raw))
    value_or_card_error(lambda: atr_historical_bytes(raw))


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(EF05_TAGS),
    st.binary(max_size=40),
    st.binary(max_size=36),
    st.sampled_from(list(CardAlgorithm)),
)
def test_ef05_decoding_gives_a_value_or_card_error(
    tag: int, value: bytes, atr: bytes, algorithm: CardAlgorithm
) -> None:
    value_or_card_error(lambda: decode_basics(atr, algorithm, {**GOOD_EF05, tag: value}))
    value_or_card_error(lambda: decode_basics(CHIP.atr, algorithm, {**GOOD_EF05, tag: value}))


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(EF06_TAGS), st.binary(max_size=40), st.booleans())
def test_ef06_decoding_gives_a_value_or_card_error(tag: int, value: bytes, drop: bool) -> None:
    records = {**GOOD_EF06, tag: value}
    if drop:
        del records[tag]
    value_or_card_error(lambda: decode_holder(records))
