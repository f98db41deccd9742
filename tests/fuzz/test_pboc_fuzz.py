"""Fuzzing the financial application from both ends.

Card side: whatever bytes reach the virtual chip, in whatever phase of a transaction,
`VirtualCard.transmit` answers a response APDU (data and a status word) and never
raises. Terminal side: whatever bytes the card answers, every parser of
`card.emv_data` / `card.emv_parse` returns a value or raises FinancialCardError, and
a FinancialSession driven by a card that answers arbitrary bytes ends each step with
a value or a FinancialCardError (the session then refuses further steps cleanly)."""

from __future__ import annotations

import contextlib
import datetime as dt
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from card import emv_data, emv_parse
from card.apdu import CommandApdu
from card.emv_data import UNIONPAY_DEBIT_AID, FinancialCardError
from card.memory import MemoryReader
from card.pboc import FinancialSession, TransactionData, WrongSessionState
from card.tlv import Tlv, encode, parse
from hsm.keystore import KeyStore
from hsm.soft_admin import demo_hierarchy
from simulators.card.card import VirtualCard
from simulators.card.keys import IssuerMasters, card_keys
from simulators.card.pboc import PbocApplication
from simulators.population import generate

H = bytes.fromhex
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_POPULATION = generate(11, 1)
_CARD, _PERSON = _POPULATION.card(0), _POPULATION.persons[0]
_KEYS = card_keys(
    IssuerMasters.from_keystore(KeyStore(demo_hierarchy(random.Random(5).randbytes))), _CARD
)

# Valid prefixes that bring the card into each phase of a transaction.
SELECT_AID = H("00A4040008A00000033301010100")
GPO = H("80A800000683040156015600")
FIRST_AC = H("80AE80001D") + bytes(29) + b"\x00"
PHASES = [
    [],
    [H("00A404000E") + b"2PAY.SYS.DDF01" + b"\x00"],
    [SELECT_AID],
    [SELECT_AID, GPO],
    [SELECT_AID, GPO, FIRST_AC],
]


def fresh_chip() -> VirtualCard:
    app = PbocApplication(_CARD, _PERSON, _KEYS, random_bytes=random.Random(0).randbytes)
    chip = VirtualCard([app], generation=_CARD.generation)
    chip.power_on()
    return chip


# Parameters the application looks at (GENERATE AC types, READ RECORD P2s), or any.
_MEANINGFUL = [0x00, 0x01, 0x04, 0x0C, 0x14, 0x40, 0x80, 0x90, 0xC0]
_PARAMETER = st.sampled_from(_MEANINGFUL) | st.integers(0, 255)
_DATA = st.binary(max_size=40) | st.binary(max_size=300)
_LE = st.none() | st.integers(1, 65_536)


def _command(cla: int, ins: int) -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda p1, p2, data, le: CommandApdu(cla, ins, p1, p2, data, le).encode(),
        _PARAMETER,
        _PARAMETER,
        _DATA,
        _LE,
    )


# Commands shaped like the application's own, with arbitrary parameters and data.
shaped_commands = st.tuples(
    st.sampled_from([0x00, 0x80, 0x84]),
    st.sampled_from([0xA4, 0xA8, 0xB2, 0xAE, 0x84, 0xCA, 0x20]),
).flatmap(lambda ci: _command(*ci))
any_commands = st.binary(max_size=300) | shaped_commands
APPLICATION_COMMANDS = [(0x80, 0xA8), (0x00, 0xB2), (0x80, 0xAE), (0x00, 0x84)]


@FUZZ
@given(phase=st.sampled_from(PHASES), commands=st.lists(any_commands, max_size=6))
def test_the_card_answers_any_command_in_any_phase(
    phase: list[bytes], commands: list[bytes]
) -> None:
    chip = fresh_chip()
    for command in [*phase, *commands]:
        answer = chip.transmit(command)
        assert isinstance(answer, bytes) and len(answer) >= 2


@pytest.mark.parametrize("phase", range(len(PHASES)))
@pytest.mark.parametrize(("cla", "ins"), APPLICATION_COMMANDS)
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_each_application_command_with_any_parameters_in_each_phase(
    phase: int, cla: int, ins: int, data: st.DataObject
) -> None:
    chip = fresh_chip()
    for command in PHASES[phase]:
        chip.transmit(command)
    for _ in range(2):
        answer = chip.transmit(data.draw(_command(cla, ins)))
        assert isinstance(answer, bytes) and len(answer) >= 2


def _mutate(raw: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    out = bytearray(raw)
    for pos, byte in edits:
        if out:
            out[pos % len(out)] = byte
    return bytes(out[: len(out) - cut % (len(out) + 1)])


def _card_answers() -> list[bytes]:
    """Genuine answers of the virtual card, as seeds for mutation."""
    chip = fresh_chip()
    commands = [
        H("00A404000E") + b"2PAY.SYS.DDF01" + b"\x00",
        SELECT_AID,
        GPO,
        H("00B2010C00"),
        H("00B2011400"),
        FIRST_AC,
        H("80AE400015") + bytes(21) + b"\x00",
    ]
    return [chip.transmit(c)[:-2] for c in commands]


GENUINE = _card_answers()
PARSERS: list[Callable[[bytes], Any]] = [
    emv_parse.parse_directory,
    lambda b: emv_parse.parse_app_fci(b, UNIONPAY_DEBIT_AID),
    emv_parse.parse_gpo,
    emv_parse.parse_record,
    emv_parse.parse_generate_ac,
    emv_parse.afl_records,
    emv_data.parse_dol,
    emv_data.parse_pan,
    emv_data.parse_track2,
    emv_data.cvr_from_iad,
    lambda b: emv_data.parse_date_bcd(b, "date"),
    lambda b: emv_data.ac_mac_data(b"", b"\x00\x00", b"\x00\x01", b),
]
# Well-formed TLV trees of the application's own tags with arbitrary values and
# nesting: reach the checks behind the TLV layer (lengths of CID, ATC, AFL, ...).
_CONSTRUCTED = [t.value for t in emv_data.Tag if t.value.to_bytes(3).lstrip(b"\0")[0] & 0x20]
_PRIMITIVE = [t.value for t in emv_data.Tag if t.value not in _CONSTRUCTED]
tlv_trees = st.recursive(
    st.builds(Tlv, st.sampled_from(_PRIMITIVE), st.binary(max_size=12)),
    lambda kids: st.builds(
        lambda tag, children: Tlv(tag, children=tuple(children)),
        st.sampled_from(_CONSTRUCTED),
        st.lists(kids, max_size=5),
    ),
    max_leaves=12,
)
tlv_answers = st.lists(tlv_trees, min_size=1, max_size=2).map(
    lambda objs: b"".join(encode(o) for o in objs)
)


def _rewrite(obj: Tlv, target: int, value: bytes | None, seen: list[int]) -> Tlv | None:
    """`obj` with its `target`-th leaf given `value` (None: removed)."""
    if not obj.children:
        seen[0] += 1
        if seen[0] - 1 != target:
            return obj
        return None if value is None else Tlv(obj.tag, value)
    kids = (_rewrite(child, target, value, seen) for child in obj.children)
    return Tlv(obj.tag, children=tuple(k for k in kids if k is not None))


@st.composite
def mutated(draw: st.DrawFn, raw: bytes) -> bytes:
    """A genuine answer with bytes overwritten and cut, or one data object's value
    replaced or removed (which keeps the TLV valid and reaches the checks behind it)."""
    if draw(st.booleans()):
        edits = draw(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4))
        return _mutate(raw, edits, draw(st.integers(0, 8)))
    (root,) = parse(raw)
    target, value = draw(st.integers(0, 12)), draw(st.none() | st.binary(max_size=12))
    rewritten = _rewrite(root, target, value, [0])
    return b"" if rewritten is None else encode(rewritten)


answers = st.binary(max_size=400) | tlv_answers | st.sampled_from(GENUINE).flatmap(mutated)


@FUZZ
@given(raw=answers)
def test_every_parser_returns_a_value_or_a_financial_card_error(raw: bytes) -> None:
    for parser in PARSERS:
        with contextlib.suppress(FinancialCardError):
            parser(raw)


def _records(raw: bytes) -> object:
    objects: dict[int, bytes] = {}
    emv_parse.collect_record_objects(objects, emv_parse.parse_record(raw))
    return emv_parse.financial_record(objects)


# Each parser against mutations of the genuine answer it is made for.
TARGETED: list[tuple[Callable[[bytes], Any], int]] = [
    (emv_parse.parse_directory, 0),
    (PARSERS[1], 1),
    (lambda b: emv_parse.afl_records(emv_parse.parse_gpo(b).afl), 2),
    (_records, 4),
    (emv_parse.parse_generate_ac, 5),
    (lambda b: emv_data.cvr_from_iad(emv_parse.parse_generate_ac(b).iad), 6),
]


@pytest.mark.parametrize(
    ("parser", "index"),
    TARGETED,
    ids=["directory", "application-fci", "gpo-afl", "records", "generate-ac", "iad-cvr"],
)
@FUZZ
@given(data=st.data())
def test_mutated_genuine_answers_give_a_value_or_a_financial_card_error(
    parser: Callable[[bytes], Any], index: int, data: st.DataObject
) -> None:
    raw = data.draw(mutated(GENUINE[index]))
    with contextlib.suppress(FinancialCardError):
        parser(raw)


@FUZZ
@given(
    objects=st.dictionaries(
        st.sampled_from([0x5A, 0x5F24, 0x5F25, 0x5F34, 0x57, 0x9F61, 0x8C, 0x8D]),
        st.binary(max_size=24),
    )
)
def test_any_record_objects_give_a_record_or_a_financial_card_error(
    objects: dict[int, bytes],
) -> None:
    with contextlib.suppress(FinancialCardError):
        emv_parse.financial_record(objects)


class ScriptedIcc:
    """Stands in for a misbehaving card (none can be built here): answers the drawn
    responses in turn, then 6F00."""

    atr = H("3B8180018080")

    def __init__(self, answers: list[bytes]) -> None:
        self._answers = answers

    def power_on(self) -> bytes:
        return self.atr

    def power_off(self) -> None:
        pass

    def transmit(self, command: bytes) -> bytes:
        return self._answers.pop(0) if self._answers else H("6F00")


def _flow_with(index: int) -> st.SearchStrategy[list[bytes]]:
    """The genuine flow with the answer at `index` mutated: reaches every step."""
    genuine = [answer + H("9000") for answer in GENUINE]
    return mutated(GENUINE[index]).map(
        lambda m: [*genuine[:index], m + H("9000"), *genuine[index + 1 :]]
    )


flows = st.lists(
    st.builds(lambda data, sw: data + sw, answers, st.sampled_from([H("9000"), H("6985")])),
    max_size=8,
) | st.integers(0, len(GENUINE) - 1).flatmap(_flow_with)


@FUZZ
@given(responses=flows)
def test_a_session_against_a_card_answering_anything_fails_only_cleanly(
    responses: list[bytes],
) -> None:
    reader = MemoryReader(ScriptedIcc(list(responses)))
    reader.connect(deadline_s=1.0)
    session = FinancialSession(reader)
    txn = TransactionData(amount_fen=1, date=dt.date(2026, 1, 1), unpredictable_number=bytes(4))
    steps: list[Callable[[], object]] = [
        session.select_ppse,
        lambda: session.select(UNIONPAY_DEBIT_AID),
        session.get_processing_options,
        session.read_records,
        lambda: session.generate_ac(txn),
        lambda: session.complete(b"00", bytes(8)),
    ]
    for step in steps:
        try:
            step()
        except FinancialCardError:
            continue  # a refused selection leaves the session able to select again
        except WrongSessionState:  # an earlier step failed: the order is enforced
            break
