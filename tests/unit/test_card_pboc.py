"""The financial application end to end: the terminal flow (`card.pboc`) against the
virtual PBOC card through a MemoryReader, with the issuer side played by the real soft
HSM backend over the demo key hierarchy (the same issuer master the card's MK_AC is
derived from). Pins: the terminal reads the Card's PAN and expiry, its `mac_data` is
exactly what the issuer verifies the ARQC over, the ARPC decides TC/AAC, a clone's
cryptogram fails, the ATC survives power cycles, and out-of-order calls are refused."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from card.emv_data import UNIONPAY_DEBIT_AID, CryptogramType, FinancialCardError, FinancialResult
from card.memory import MemoryReader
from card.pboc import (
    ApplicationCryptogram,
    FinancialSession,
    SessionState,
    TransactionData,
    WrongSessionState,
)
from card.reader import CardRemoved
from hsm.keystore import KeyStore
from hsm.protocol import KeyRef
from hsm.soft import SoftHsm
from hsm.soft_admin import demo_hierarchy
from simulators.card.card import VirtualCard
from simulators.card.keys import CardKeys, IssuerMasters, card_keys, clone_keys
from simulators.card.pboc import PbocApplication
from simulators.population import Card, Person, generate

T = 5.0
IMK = KeyRef("emv.imk.ac")
TXN = TransactionData(
    amount_fen=12_345, date=dt.date(2026, 3, 1), unpredictable_number=bytes.fromhex("1A2B3C4D")
)


class Rig:
    """A demo key hierarchy, one person's card on a virtual chip in a MemoryReader."""

    def __init__(self, *, clone: bool = False, index: int = 0) -> None:
        seeded = random.Random(20260301)
        self.store = KeyStore(demo_hierarchy(seeded.randbytes))
        self.hsm = SoftHsm(self.store)
        population = generate(7, index + 1)
        self.card: Card = population.card(index)
        self.person: Person = population.persons[index]
        keys: CardKeys = (
            clone_keys(self.card, seeded.randbytes)
            if clone
            else card_keys(IssuerMasters.from_keystore(self.store), self.card)
        )
        self.app = PbocApplication(self.card, self.person, keys, random_bytes=seeded.randbytes)
        self.chip = VirtualCard([self.app], generation=self.card.generation)
        self.reader = MemoryReader(self.chip)
        self.reader.connect(deadline_s=T)

    def session_to_records(self) -> FinancialSession:
        session = FinancialSession(self.reader)
        session.select(UNIONPAY_DEBIT_AID)
        session.get_processing_options()
        session.read_records()
        return session

    async def verifies(self, ac: ApplicationCryptogram) -> bool:
        return await self.hsm.verify_arqc(
            IMK, self.card.pan, "00", ac.atc, ac.mac_data, ac.ac, deadline_s=T
        )

    async def arpc(self, arqc: ApplicationCryptogram, arc: bytes = b"00") -> bytes:
        return await self.hsm.arpc_method_1(
            IMK, self.card.pan, "00", arqc.atc, arqc.ac, arc, deadline_s=T
        )


def test_directory_selection_and_records_match_the_card() -> None:
    rig = Rig()
    session = FinancialSession(rig.reader)
    (entry,) = session.select_ppse()
    assert entry.aid == UNIONPAY_DEBIT_AID and entry.label == "PBOC DEBIT" and entry.priority == 1
    selection = session.select(entry.aid)
    assert selection.aid == UNIONPAY_DEBIT_AID and selection.pdol == bytes.fromhex("9F1A025F2A02")
    options = session.get_processing_options()
    assert options.aip == bytes.fromhex("0C00")
    record = session.read_records()
    assert record.pan == rig.card.pan and record.expiry == rig.card.expiry_date
    assert record.psn == "00" and record.effective == rig.card.issue_date
    assert record.holder_id == rig.person.certno
    assert session.record == record and session.state is SessionState.records_read


def test_record_repr_masks_pan_track2_and_id_number() -> None:
    rig = Rig()
    record = rig.session_to_records().record
    assert record is not None
    shown = repr(record)
    assert rig.card.pan not in shown and rig.card.pan[:6] not in shown
    assert rig.person.certno not in shown and record.track2 is not None
    assert record.track2.hex() not in shown and rig.card.pan[-4:] in shown


async def test_arqc_verifies_at_the_issuer_and_a_right_arpc_gives_tc() -> None:
    rig = Rig()
    session = rig.session_to_records()
    arqc = session.generate_ac(TXN)
    assert arqc.cryptogram_type is CryptogramType.arqc and arqc.atc == b"\x00\x01"
    assert session.state is SessionState.online_pending
    # mac_data: the CDOL1 values the terminal sent, AIP, ATC, CVR (ARQC, 2nd AC not asked)
    assert arqc.mac_data == bytes.fromhex(
        "000000012345"  # 9F02 amount, 123.45 yuan
        "000000000000"  # 9F03 other amount
        "0156"  # 9F1A terminal country
        "0000000000"  # 95 TVR
        "0156"  # 5F2A currency
        "260301"  # 9A date
        "00"  # 9C type
        "1A2B3C4D"  # 9F37 unpredictable number
        "0C00"  # 82 AIP
        "0001"  # 9F36 ATC
        "03A00000"  # CVR from 9F10
    )
    assert await rig.verifies(arqc)
    assert session.complete(b"00", await rig.arpc(arqc)) is True
    final = session.final_cryptogram
    assert final is not None and final.cryptogram_type is CryptogramType.tc
    assert final.atc == arqc.atc and session.state is SessionState.completed
    # The TC is a cryptogram over its own mac_data with the same session key: the
    # issuer can check it at clearing.
    assert await rig.verifies(final)
    assert repr(arqc).count(arqc.ac.hex()) == 0


async def test_a_changed_amount_no_longer_verifies() -> None:
    rig = Rig()
    arqc = rig.session_to_records().generate_ac(TXN)
    forged = bytes.fromhex("000000099999") + arqc.mac_data[6:]
    assert not await rig.hsm.verify_arqc(
        IMK, rig.card.pan, "00", arqc.atc, forged, arqc.ac, deadline_s=T
    )


async def test_a_wrong_arpc_gives_aac() -> None:
    rig = Rig()
    session = rig.session_to_records()
    arqc = session.generate_ac(TXN)
    arpc = bytearray(await rig.arpc(arqc))
    arpc[0] ^= 0x01
    assert session.complete(b"00", bytes(arpc)) is False
    final = session.final_cryptogram
    assert final is not None and final.cryptogram_type is CryptogramType.aac
    assert final.iad[4] & 0x08  # CVR: issuer authentication failed


async def test_an_arpc_for_another_arc_gives_aac() -> None:
    """91 binds the ARPC to the ARC: an ARPC computed for "05" does not approve "00"."""
    rig = Rig()
    session = rig.session_to_records()
    arqc = session.generate_ac(TXN)
    assert session.complete(b"00", await rig.arpc(arqc, b"05")) is False


async def test_a_declining_issuer_gets_aac_even_with_a_right_arpc() -> None:
    rig = Rig()
    session = rig.session_to_records()
    arqc = session.generate_ac(TXN)
    assert session.complete(b"05", await rig.arpc(arqc, b"05")) is False
    final = session.final_cryptogram
    assert final is not None and final.cryptogram_type is CryptogramType.aac
    assert not final.iad[4] & 0x08  # issuer authentication passed; declined all the same


async def test_a_clones_arqc_does_not_verify() -> None:
    rig = Rig(clone=True)
    session = rig.session_to_records()
    assert session.record is not None and session.record.pan == rig.card.pan  # right data
    arqc = session.generate_ac(TXN)
    assert not await rig.verifies(arqc)
    # and the issuer's ARPC does not convince the clone either
    assert session.complete(b"00", await rig.arpc(arqc)) is False


async def test_atc_increases_across_power_cycles() -> None:
    rig = Rig()
    seen = []
    for _ in range(3):
        session = rig.session_to_records()
        arqc = session.generate_ac(TXN)
        assert await rig.verifies(arqc)
        seen.append(int.from_bytes(arqc.atc, "big"))
        rig.reader.disconnect()
        rig.reader.connect(deadline_s=T)
    assert seen == [1, 2, 3]


async def test_a_new_selection_starts_a_new_transaction_with_the_next_atc() -> None:
    rig = Rig()
    session = rig.session_to_records()
    first = session.generate_ac(TXN)
    assert session.complete(b"00", await rig.arpc(first))
    session.select(UNIONPAY_DEBIT_AID)
    session.get_processing_options()
    session.read_records()
    second = session.generate_ac(TXN)
    assert second.atc == b"\x00\x02" and await rig.verifies(second)


def test_out_of_order_calls_are_refused_and_send_nothing() -> None:
    """The reader holds no card: anything sent would fail as reader_failed, so a
    WrongSessionState proves the call stopped before the reader."""
    session = FinancialSession(MemoryReader())
    for call in (
        session.get_processing_options,
        session.read_records,
        lambda: session.generate_ac(TXN),
        lambda: session.complete(b"00", bytes(8)),
    ):
        with pytest.raises(WrongSessionState, match="the session is idle"):
            call()
    assert session.state is SessionState.idle


def test_steps_in_the_middle_of_a_transaction_refuse_a_repeat_or_a_skip() -> None:
    rig = Rig()
    session = FinancialSession(rig.reader)
    session.select(UNIONPAY_DEBIT_AID)
    with pytest.raises(WrongSessionState, match="cannot read_records: the session is selected"):
        session.read_records()
    with pytest.raises(WrongSessionState, match="cannot select_ppse"):
        session.select_ppse()
    session.get_processing_options()
    with pytest.raises(WrongSessionState, match="cannot generate_ac"):
        session.generate_ac(TXN)
    session.read_records()
    session.generate_ac(TXN)
    with pytest.raises(WrongSessionState, match="cannot generate_ac: the session is online"):
        session.generate_ac(TXN)
    with pytest.raises(WrongSessionState, match="cannot select"):
        session.select(UNIONPAY_DEBIT_AID)
    assert session.state is SessionState.online_pending


def test_complete_refuses_wrong_lengths_before_sending() -> None:
    rig = Rig()
    session = rig.session_to_records()
    session.generate_ac(TXN)
    with pytest.raises(ValueError, match="2-byte ARC and an 8-byte ARPC"):
        session.complete(b"0", bytes(8))
    assert session.state is SessionState.online_pending


def test_an_unknown_aid_is_not_found_and_the_session_may_try_another() -> None:
    rig = Rig()
    session = FinancialSession(rig.reader)
    with pytest.raises(FinancialCardError) as info:
        session.select(bytes.fromhex("A000000333010102"))
    assert info.value.result is FinancialResult.application_not_found
    assert info.value.sw == 0x6A82 and session.state is SessionState.idle
    session.select(UNIONPAY_DEBIT_AID)
    assert session.state is SessionState.selected


def test_a_removed_card_breaks_the_session_with_the_reader_error_chained() -> None:
    rig = Rig()
    session = FinancialSession(rig.reader)
    session.select(UNIONPAY_DEBIT_AID)
    rig.reader.remove()
    with pytest.raises(FinancialCardError) as info:
        session.get_processing_options()
    assert info.value.result is FinancialResult.reader_failed
    assert isinstance(info.value.__cause__, CardRemoved)
    assert session.state is SessionState.broken
    with pytest.raises(WrongSessionState, match="broken"):
        session.select(UNIONPAY_DEBIT_AID)


class SteppingClock:
    """Virtual time: every reading is `step_s` later than the one before."""

    def __init__(self, step_s: float) -> None:
        self.now_s, self.step_s = 0.0, step_s

    def __call__(self) -> float:
        self.now_s += self.step_s
        return self.now_s


def test_a_step_that_outlives_its_deadline_fails_between_commands() -> None:
    """read_records sends two READ RECORDs; with 0.8 s passing per clock reading and a
    1 s budget, the second finds the budget spent."""
    rig = Rig()
    session = FinancialSession(rig.reader, deadline_s=1.0, clock=SteppingClock(0.8))
    session.select(UNIONPAY_DEBIT_AID)  # one command: started 0.8, sent at 1.6 (0.8 in)
    session.get_processing_options()
    with pytest.raises(FinancialCardError) as info:
        session.read_records()
    assert info.value.result is FinancialResult.deadline_exceeded
    assert session.state is SessionState.failed


def test_a_card_refusal_after_selection_leaves_the_session_failed() -> None:
    """The card is selected by the session, then someone else selects the directory
    on the same power-on: the card refuses GPO (6985), the session must start over."""
    rig = Rig()
    session = FinancialSession(rig.reader)
    session.select(UNIONPAY_DEBIT_AID)
    rig.chip.transmit(bytes.fromhex("00A404000E") + b"2PAY.SYS.DDF01" + b"\x00")
    with pytest.raises(FinancialCardError) as info:
        session.get_processing_options()
    assert info.value.result is FinancialResult.card_refused and info.value.sw == 0x6985
    assert session.state is SessionState.failed
    session.select(UNIONPAY_DEBIT_AID)
    session.get_processing_options()
    assert session.read_records().pan == rig.card.pan


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("amount_fen", -1, "amount_fen must be"),
        ("amount_fen", 10**12, "amount_fen must be"),
        ("unpredictable_number", b"\x00" * 3, "4 bytes"),
        ("tvr", b"\x00" * 4, "5 bytes"),
        ("currency", "15", "3 digits"),
        ("txn_type", 100, "0..99"),
    ],
)
def test_transaction_data_refuses_values_the_cdol_cannot_carry(
    field: str, value: object, message: str
) -> None:
    fields: dict[str, object] = {
        "amount_fen": 1,
        "date": dt.date(2026, 3, 1),
        "unpredictable_number": bytes(4),
    }
    fields[field] = value
    with pytest.raises(ValueError, match=message):
        TransactionData(**fields)  # type: ignore[arg-type]
