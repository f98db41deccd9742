"""The terminal side of the SSSE application (`card.ssse.CardSession`) against the
virtual card in a MemoryReader: the whole read and authentication flow for generation
2 (3DES) and 3 (SM4), the RKSSSE rule, external authentication and PIN outcomes with
the terminal-standard codes, a card pulled out mid-session, wrong-state calls, the
61xx/6Cxx handling and the iReadCardBas line. Cards come from
tests/unit/test_virtual_card_ssse.py's builder; nothing is mocked except where a
test says so.
"""

from __future__ import annotations

import datetime as dt

import pytest

from card.apdu import CommandApdu, ResponseApdu
from card.memory import MemoryReader
from card.reader import CardRemoved, ReaderError, ReaderTimeout, ReaderUnavailable
from card.ssse import (
    CardAlgorithm,
    CardError,
    CardResult,
    CardSession,
    SessionState,
    SessionStateError,
    read_card_bas_line,
    transceive,
)
from hsm.cardauth import external_auth_cryptogram, internal_auth_cryptogram
from hsm.protocol import KeyRef
from hsm.soft import SoftHsm
from simulators.card.app import CardMode
from simulators.card.card import VirtualCard
from tests.unit.test_virtual_card_ssse import LONG_NAME, PERSON, STORE, Rig, make_card


def open_session(generation: int = 3, mode: CardMode = CardMode.genuine) -> tuple[Rig, CardSession]:
    rig = make_card(generation, mode)
    session = CardSession(MemoryReader(rig.chip))
    session.open()
    return rig, session


def authenticate_externally(rig: Rig, session: CardSession) -> None:
    factor = session.get_challenge()
    challenge = session.get_challenge()  # the card keeps its last challenge
    session.external_authenticate(
        factor, external_auth_cryptogram(rig.keys.external_auth, factor, challenge)
    )


@pytest.mark.parametrize(
    ("generation", "algorithm", "version"),
    [(2, CardAlgorithm.TDES, "2.00"), (3, CardAlgorithm.SM4, "3.00")],
)
def test_open_reads_ef05_and_the_algorithm_from_the_fci(
    generation: int, algorithm: CardAlgorithm, version: str
) -> None:
    rig, session = open_session(generation)
    basics = session.basics
    assert basics is not None and session.state is SessionState.open
    card = rig.card
    assert (basics.card_sn, basics.card_no, basics.region) == (card.card_sn, card.card_no, "510100")
    assert (basics.generation, basics.algorithm, basics.spec_version) == (
        generation,
        algorithm,
        version,
    )
    assert (basics.issue_date, basics.expiry_date) == (card.issue_date, card.expiry_date)
    assert (basics.card_type, basics.init_org) == ("3", "510100000000")
    assert (
        basics.atr == rig.chip.atr and basics.historical_bytes == f"YKT-SSC-G{generation}".encode()
    )


def test_generation_2_reads_the_holder_with_the_name_extension() -> None:
    _, session = open_session(2)
    holder = session.read_holder()
    assert holder.name == LONG_NAME and len(LONG_NAME.encode("gbk")) > 30
    assert (holder.certno, holder.gender, holder.nation, holder.birthplace) == (
        PERSON.certno,
        "2",
        "01",
        "510104",
    )
    assert holder.birth_date == dt.date(1980, 2, 29)


def test_generation_3_refuses_the_holder_until_external_authentication() -> None:
    rig, session = open_session(3)
    with pytest.raises(CardError) as refused:
        session.read_holder()
    assert refused.value.result is CardResult.security_status_not_satisfied
    assert refused.value.sw == 0x6982 and session.state is SessionState.open
    authenticate_externally(rig, session)
    assert session.read_holder().certno == PERSON.certno


def test_wrong_external_authentication_counts_down_then_blocks() -> None:
    _, session = open_session(3)
    seen = []
    for _ in range(4):
        session.get_challenge()
        with pytest.raises(CardError) as failed:
            session.external_authenticate(bytes(8), bytes(8))
        seen.append((failed.value.result, failed.value.tries_left))
    assert seen == [
        (CardResult.external_auth_failed_2_left, 2),
        (CardResult.external_auth_failed_1_left, 1),
        (CardResult.external_auth_failed_0_left, 0),
        (CardResult.external_auth_failed_0_left, 0),  # 6983: blocked
    ]
    assert int(CardResult.external_auth_failed_2_left) == -25536


def test_external_authentication_without_a_challenge_is_refused() -> None:
    _, session = open_session(3)
    with pytest.raises(CardError) as refused:
        session.external_authenticate(bytes(8), bytes(8))
    assert refused.value.result is CardResult.conditions_of_use_not_satisfied


def test_internal_authenticate_returns_the_card_cryptogram() -> None:
    rig, session = open_session(2)
    factor = session.get_challenge()
    challenge = bytes.fromhex("0011223344556677")
    cryptogram = session.internal_authenticate(factor, challenge)
    assert cryptogram == internal_auth_cryptogram(rig.keys.internal_auth, factor, challenge)


@pytest.mark.parametrize(("generation", "label"), [(2, "card.int.3des"), (3, "card.int.sm4")])
@pytest.mark.parametrize("mode", [CardMode.genuine, CardMode.clone])
async def test_only_a_genuine_cards_cryptogram_verifies_in_the_soft_hsm(
    generation: int, label: str, mode: CardMode
) -> None:
    """The engine side holds only the issuer master (label), the card only its key."""
    rig, session = open_session(generation, mode)
    factor, challenge = session.get_challenge(), bytes(range(8))
    cryptogram = session.internal_authenticate(factor, challenge)
    hsm = SoftHsm(STORE)
    card_sn = bytes.fromhex(rig.card.card_sn)
    verified = await hsm.verify_card_cryptogram(
        KeyRef(label), card_sn, factor, challenge, cryptogram, deadline_s=5.0
    )
    assert verified is (mode is CardMode.genuine)


def test_pin_right_wrong_and_blocked() -> None:
    rig, session = open_session(2)
    assert session.pin_tries_left() == 3
    session.verify_pin(rig.card.pin)
    outcomes = []
    for _ in range(3):
        with pytest.raises(CardError) as wrong:
            session.verify_pin("000000")
        outcomes.append((wrong.value.result, wrong.value.tries_left))
    assert outcomes == [
        (CardResult.pin_verify_failed, 2),
        (CardResult.pin_verify_failed, 1),
        (CardResult.pin_locked, 0),
    ]
    with pytest.raises(CardError) as locked:
        session.verify_pin(rig.card.pin)
    assert locked.value.result is CardResult.pin_locked and int(locked.value.result) == -52
    assert session.pin_tries_left() == 0


def test_pin_blocked_card_reports_locked() -> None:
    rig, session = open_session(3, CardMode.pin_blocked)
    assert session.pin_tries_left() == 0
    with pytest.raises(CardError) as locked:
        session.verify_pin(rig.card.pin)
    assert locked.value.result is CardResult.pin_locked


def test_change_pin_then_only_the_new_pin_verifies() -> None:
    rig, session = open_session(3)
    session.change_pin(rig.card.pin, "24680")
    session.verify_pin("24680")
    with pytest.raises(CardError) as wrong:
        session.verify_pin(rig.card.pin)
    assert wrong.value.result is CardResult.pin_verify_failed and int(wrong.value.result) == -51
    with pytest.raises(CardError) as wrong_old:
        session.change_pin(rig.card.pin, "1357")
    assert wrong_old.value.tries_left == 1


@pytest.mark.parametrize(
    ("pin", "result"),
    [
        ("123", CardResult.pin_length_error),
        ("1" * 17, CardResult.pin_length_error),
        ("12a456", CardResult.illegal_input),
        ("１２３４５６", CardResult.illegal_input),  # full-width digits are not ASCII
    ],
)
def test_bad_pins_are_refused_before_reaching_the_card(pin: str, result: CardResult) -> None:
    _, session = open_session(2)
    with pytest.raises(CardError) as refused:
        session.verify_pin(pin)
    assert refused.value.result is result
    assert session.pin_tries_left() == 3


def test_expired_card_opens_and_fails_the_validity_check() -> None:
    _, session = open_session(3, CardMode.expired)
    basics = session.basics
    assert basics is not None and basics.expiry_date.year == 2024
    with pytest.raises(CardError) as expired:
        basics.ensure_valid_on(dt.date(2025, 1, 1))
    assert expired.value.result is CardResult.card_expired
    _, genuine = open_session(3)
    assert genuine.basics is not None
    genuine.basics.ensure_valid_on(genuine.basics.expiry_date)  # valid through that day


def test_card_removed_mid_session_is_card_removed_and_the_session_is_lost() -> None:
    rig = make_card(3)
    reader = MemoryReader(rig.chip)
    session = CardSession(reader)
    session.open()
    reader.remove()
    with pytest.raises(CardError) as removed:
        session.get_challenge()
    assert removed.value.result is CardResult.card_removed
    assert isinstance(removed.value.__cause__, CardRemoved)
    assert session.state is SessionState.lost
    with pytest.raises(SessionStateError, match="session is lost"):
        session.read_holder()
    session.close()
    assert session.state is SessionState.closed


def test_no_card_fails_open_with_no_card_and_closes_the_session() -> None:
    session = CardSession(MemoryReader())
    with pytest.raises(CardError) as missing:
        session.open()
    assert missing.value.result is CardResult.no_card and int(missing.value.result) == -2
    assert session.state is SessionState.closed


class FailingReader(MemoryReader):
    """Stands in for a PC/SC reader whose card stops answering or whose pcscd goes
    away: neither can happen to an in-memory card, so this one raises on transmit."""

    def __init__(self, chip: VirtualCard, failure: ReaderError) -> None:
        super().__init__(chip)
        self.failure = failure

    def transmit(self, command: CommandApdu, *, deadline_s: float) -> ResponseApdu:
        raise self.failure


@pytest.mark.parametrize(
    ("failure", "result"),
    [
        (ReaderTimeout("no answer"), CardResult.reader_timeout),
        (ReaderUnavailable("pcscd gone"), CardResult.reader_error),
    ],
)
def test_reader_failures_map_to_card_results_and_are_chained(
    failure: ReaderError, result: CardResult
) -> None:
    session = CardSession(FailingReader(make_card(2).chip, failure))
    with pytest.raises(CardError) as failed:
        session.open()
    assert failed.value.result is result and failed.value.__cause__ is failure


def test_a_card_without_the_ssse_application_is_the_wrong_card_type() -> None:
    session = CardSession(MemoryReader(VirtualCard([], generation=3)))
    with pytest.raises(CardError) as wrong:
        session.open()
    assert wrong.value.result is CardResult.wrong_card_type and wrong.value.sw == 0x6A82


def test_operations_in_the_wrong_state_are_refused_before_any_io() -> None:
    rig = make_card(2)
    session = CardSession(MemoryReader(rig.chip))
    with pytest.raises(SessionStateError, match="cannot get a challenge: the session is idle"):
        session.get_challenge()
    session.open()
    with pytest.raises(SessionStateError, match="cannot open"):
        session.open()
    session.close()
    session.close()  # harmless twice
    for call in (session.read_holder, session.pin_tries_left, lambda: session.verify_pin("1234")):
        with pytest.raises(SessionStateError, match="closed"):
            call()
    assert not rig.chip.powered


def test_bad_lengths_for_authentication_are_illegal_input() -> None:
    _, session = open_session(3)
    with pytest.raises(CardError) as bad:
        session.internal_authenticate(bytes(7), bytes(8))
    assert bad.value.result is CardResult.illegal_input


def test_transceive_re_sends_with_the_exact_le_and_collects_get_response() -> None:
    rig = make_card(3)
    reader = MemoryReader(rig.chip)
    reader.connect(deadline_s=1.0)
    select = CommandApdu(0x00, 0xA4, 0x04, 0x00, bytes.fromhex("7378312E73682EC9E7BBE1B1A3D5CF"))
    assert transceive(reader, select, deadline_s=1.0).data[:1] == b"\x6f"
    assert transceive(reader, CommandApdu(0x00, 0xA4, 0x02, 0x00, b"\xef\x05"), deadline_s=1.0).ok
    short_le = CommandApdu(0x00, 0xB2, 0x01, 0x00, le=4)  # the card answers 6C12
    assert transceive(reader, short_le, deadline_s=1.0).data[:2] == b"\x01\x10"
    no_le = CommandApdu(0x00, 0xB2, 0x03, 0x00)  # the card answers 6106, then GET RESPONSE
    answer = transceive(reader, no_le, deadline_s=1.0)
    assert answer.ok and answer.data == b"\x03\x043.00"


def test_read_card_bas_line_has_the_eleven_fields() -> None:
    rig, session = open_session(2)
    basics, holder = session.basics, session.read_holder()
    assert basics is not None
    line = read_card_bas_line(basics, holder, "T0001", "DEV-01")
    card = rig.card
    assert line == (
        f"510100|{PERSON.certno}|{card.card_no}|{card.card_sn}|{LONG_NAME}|"
        f"{b'YKT-SSC-G2'.hex().upper()}|2.00|{card.issue_date:%Y%m%d}|"
        f"{card.expiry_date:%Y%m%d}|T0001|DEV-01|"
    )
    assert line.count("|") == 11
    with pytest.raises(CardError) as bad:
        read_card_bas_line(basics, holder, "T|1", "D")
    assert bad.value.result is CardResult.illegal_input


def test_reprs_mask_card_and_holder_identifiers() -> None:
    rig, session = open_session(2)
    holder = session.read_holder()
    text = repr(session.basics) + repr(holder)
    for secret in (rig.card.card_sn, rig.card.card_no, PERSON.certno, LONG_NAME, LONG_NAME[1:3]):
        assert secret not in text
