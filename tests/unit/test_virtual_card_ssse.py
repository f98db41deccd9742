"""The virtual card's SSSE application at the APDU level: the FCI and its algorithm
identifier, EF05/EF06 records byte for byte, both READ RECORD addressings, the Le
rules (6Cxx, 61xx + GET RESPONSE), the RKSSSE rule of generation 3, the single-use
challenge, the persistent try counters of the external-authentication key and the
PIN, and the modes. Cards are built directly (VirtualCard + SsseApplication), with
keys diversified from a soft-HSM key store's masters; nothing is mocked.

`make_card` and friends are imported by tests/unit/test_card_ssse.py too.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from card.apdu import ResponseApdu
from hsm.cardauth import external_auth_cryptogram, internal_auth_cryptogram
from hsm.keystore import KeyStore
from hsm.soft_admin import demo_hierarchy
from simulators.card.app import CardMode
from simulators.card.card import VirtualCard
from simulators.card.keys import CardKeys, IssuerMasters, card_keys, clone_keys
from simulators.card.ssse import SsseApplication, split_name
from simulators.population import Card, Person, card_for

STORE = KeyStore(demo_hierarchy(random.Random(20240601).randbytes))
MASTERS = IssuerMasters.from_keystore(STORE)
# 17 GBK characters = 34 bytes: 15 in record 09, 2 in the extension 4E.
LONG_NAME = "努尔麦麦提·阿卜杜热西提·买买提江"
PERSON = Person(
    psn_no="510100000000000007",
    insuplc_admdvs="510100",
    certno="51010419800229203X",
    psn_name=LONG_NAME,
    gend="2",
    brdy=dt.date(1980, 2, 29),
    insutype="310",
    retired=False,
    psn_insu_date=dt.date(2010, 1, 1),
    emp_name="单位001",
    acct_balance_fen=0,
)
SELECT_SSSE = "00A404000F7378312E73682EC9E7BBE1B1A3D5CF"


@dataclass
class Rig:
    chip: VirtualCard
    card: Card
    keys: CardKeys
    challenges: list[bytes]

    def send(self, hex_apdu: str) -> ResponseApdu:
        return ResponseApdu.decode(self.chip.transmit(bytes.fromhex(hex_apdu.replace(" ", ""))))


def seeded_random(seed: int, log: list[bytes]) -> Callable[[int], bytes]:
    rng = random.Random(seed)

    def draw(n: int) -> bytes:
        out = rng.randbytes(n)
        log.append(out)
        return out

    return draw


def make_card(
    generation: int = 3,
    mode: CardMode = CardMode.genuine,
    person: Person = PERSON,
    *,
    seed: int = 1,
) -> Rig:
    """A powered-on chip with only the SSSE application, for the person's card of the
    wanted generation (population index 0 is generation 2, index 1 generation 3)."""
    card = card_for(0 if generation == 2 else 1, person)
    assert card.generation == generation
    log: list[bytes] = []
    draw = seeded_random(seed, log)
    keys = clone_keys(card, draw) if mode is CardMode.clone else card_keys(MASTERS, card)
    log.clear()
    chip = VirtualCard(
        [SsseApplication(card, person, keys, mode, random_bytes=draw)], generation=generation
    )
    chip.power_on()
    return Rig(chip, card, keys, log)


def selected(generation: int = 3, mode: CardMode = CardMode.genuine) -> Rig:
    rig = make_card(generation, mode)
    assert rig.send(SELECT_SSSE).ok
    return rig


def external_auth(rig: Rig, *, right: bool = True) -> ResponseApdu:
    challenge = rig.send("0084000008").data
    factor = bytes(range(8))
    cryptogram = external_auth_cryptogram(rig.keys.external_auth, factor, challenge)
    if not right:
        cryptogram = bytes([cryptogram[0] ^ 0x01]) + cryptogram[1:]
    return rig.send("008200 0A 10" + (factor + cryptogram).hex())


@pytest.mark.parametrize(("generation", "algorithm_id"), [(2, "01"), (3, "04")])
def test_select_answers_the_fci_with_the_generation_algorithm_id(
    generation: int, algorithm_id: str
) -> None:
    rig = make_card(generation)
    answer = rig.send(SELECT_SSSE)
    aid = "7378312E73682EC9E7BBE1B1A3D5CF"
    assert answer.ok
    assert answer.data.hex().upper() == f"6F19840F{aid}A5069F0C03" + "8601" + algorithm_id


def test_ef05_records_carry_the_card_data_byte_for_byte() -> None:
    rig = selected(3)
    assert rig.send("00A4020002EF05").ok
    card = rig.card
    expected = {
        0x01: bytes.fromhex(card.card_sn),
        0x02: b"3",
        0x03: b"3.00",
        0x04: card.init_org.encode(),
        0x05: bytes.fromhex(f"{card.issue_date:%Y%m%d}"),
        0x06: bytes.fromhex(f"{card.expiry_date:%Y%m%d}"),
        0x07: card.card_no.encode(),
    }
    for tag, value in expected.items():
        answer = rig.send(f"00B2{tag:02X}00{len(value) + 2:02X}")
        assert answer.ok and answer.data == bytes((tag, len(value))) + value
    assert rig.send("00B2050006").data == bytes.fromhex("0504") + bytes.fromhex("20200102")


def test_ef06_records_carry_gbk_name_with_extension_and_bcd_fields() -> None:
    rig = selected(2)
    assert rig.send("00A4020002EF06").ok
    head, tail = LONG_NAME.encode("gbk")[:30], LONG_NAME.encode("gbk")[30:]
    assert len(tail) == 4  # the extension is really used
    assert rig.send("00B2090020").data == b"\x09\x1e" + head
    assert rig.send("00B24E0016").data == b"\x4e\x14" + tail + b"\x00" * 16
    assert rig.send("00B2080014").data == b"\x08\x12" + PERSON.certno.encode()
    assert rig.send("00B20A0003").data == b"\x0a\x012"
    assert rig.send("00B20B0003").data == b"\x0b\x01\x01"
    assert rig.send("00B20C0005").data == bytes.fromhex("0C03510104")
    assert rig.send("00B20D0006").data == bytes.fromhex("0D0419800229")


def test_name_split_keeps_characters_whole_and_refuses_names_past_50_bytes() -> None:
    head, tail = split_name("王" * 14 + "·")  # 15 characters: exactly 30 bytes
    assert head == ("王" * 14 + "·").encode("gbk") and tail == b"\x00" * 20
    head, tail = split_name("a" + "王" * 15)  # 31 bytes: the 15th 王 does not split
    assert head == ("a" + "王" * 14).encode("gbk") + b"\x00"
    assert tail == "王".encode("gbk") + b"\x00" * 18
    with pytest.raises(ValueError, match="longer than 50"):
        split_name("王" * 26)


def test_read_record_by_sfi_and_number_selects_that_file() -> None:
    rig = selected(2)
    # SFI 6, record number 2 is the name (records are numbered by position).
    assert rig.send("00B2023420").data[:2] == b"\x09\x1e"
    assert rig.send("00B2073416").data[:2] == b"\x4e\x14"
    # SFI 5, record 7 is the card number; reading by SFI made EF05 current.
    assert rig.send("00B2072C0B").data == b"\x07\x09" + rig.card.card_no.encode()
    assert rig.send("00B2030006").data == b"\x03\x042.00"
    assert rig.send("00B2010412").data[:2] == b"\x01\x10"  # SFI 0 + mode 4: current EF


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("00B2200012", 0x6A83),  # no record 20 in EF05
        ("00B2082C12", 0x6A83),  # EF05 has 7 records
        ("00B2013C12", 0x6A82),  # SFI 7: no such file
        ("00B2010212", 0x6A86),  # "next record" addressing is not supported
        ("00B2000412", 0x6A86),  # record number 0
        ("00B201FC12", 0x6A86),  # SFI 31 is reserved
        ("00A4020002EF99", 0x6A82),
        ("00A4020003EF0501", 0x6700),
        ("00A4080002EF05", 0x6A86),
        ("00CA000000", 0x6D00),  # GET DATA: not an SSSE instruction
        ("8020000003123456", 0x6E00),  # VERIFY with a proprietary class
        ("00880000080102030405060708", 0x6700),  # INTERNAL AUTHENTICATE needs 16 bytes
        ("0088010010" + "00" * 16 + "08", 0x6A86),
        ("0084000108", 0x6A86),
        ("00C0000008", 0x6985),  # GET RESPONSE with nothing pending
    ],
)
def test_bad_commands_get_precise_status_words(apdu: str, sw: int) -> None:
    rig = selected(2)
    assert rig.send("00A4020002EF05").ok
    assert rig.send(apdu).sw == sw


def test_read_record_without_a_current_file_is_refused() -> None:
    rig = selected(2)
    assert rig.send("00B2010012").sw == 0x6986


def test_wrong_le_gets_6cxx_and_missing_le_gets_61xx_then_get_response() -> None:
    rig = selected(3)
    assert rig.send("00A4020002EF05").ok
    assert rig.send("00B2010005").sw == 0x6C12
    assert rig.send("00B2010012").ok
    assert rig.send("00B2010000").data[:2] == b"\x01\x10"  # Le 00: all there is
    assert rig.send("00B20100").sw == 0x6112
    assert rig.send("00C0000004").sw == 0x6C12  # the data keeps waiting
    got = rig.send("00C0000012")
    assert got.ok and got.data[:2] == b"\x01\x10"
    assert rig.send("00C0000012").sw == 0x6985  # handed out once
    assert rig.send("00B20100").sw == 0x6112
    assert rig.send("0084000008").ok
    assert rig.send("00C0000012").sw == 0x6985  # any other command drops it


def test_generation_3_refuses_ef06_until_external_authentication() -> None:
    rig = selected(3)
    assert rig.send("00A4020002EF06").ok
    assert rig.send("00B2080014").sw == 0x6982
    assert rig.send("00B2013414").sw == 0x6982
    assert external_auth(rig).ok
    assert rig.send("00B2080014").data == b"\x08\x12" + PERSON.certno.encode()
    rig.chip.power_on()  # a new power-on session forgets it
    assert rig.send(SELECT_SSSE).ok
    assert rig.send("00B2013414").sw == 0x6982


def test_generation_2_reads_ef06_without_external_authentication() -> None:
    rig = selected(2)
    assert rig.send("00B2013414").data == b"\x08\x12" + PERSON.certno.encode()


def test_get_challenge_answers_the_injected_randomness() -> None:
    rig = selected(3)
    first, second = rig.send("0084000008"), rig.send("0084000008")
    assert first.ok and first.data == rig.challenges[0] and second.data == rig.challenges[1]
    assert first.data != second.data
    assert rig.send("0084000004").sw == 0x6C08
    assert len(rig.challenges) == 2  # a refused GET CHALLENGE draws nothing


def test_external_authentication_consumes_the_last_challenge_only() -> None:
    rig = selected(3)
    rig.send("0084000008")
    challenge = rig.send("0084000008").data
    factor = bytes(8)
    cryptogram = external_auth_cryptogram(rig.keys.external_auth, factor, challenge)
    command = "008200 0A 10" + (factor + cryptogram).hex()
    assert rig.send(command).ok
    assert rig.send(command).sw == 0x6985  # replay: the challenge was used
    assert rig.send("0082000010" + "00" * 16).sw == 0x6A86  # only key 0A (RKSSSE)


def test_external_authentication_counts_down_blocks_and_survives_power_on() -> None:
    rig = selected(3)
    assert [external_auth(rig, right=False).sw for _ in range(2)] == [0x63C2, 0x63C1]
    rig.chip.power_on()
    assert rig.send(SELECT_SSSE).ok
    assert external_auth(rig, right=False).sw == 0x63C0
    assert external_auth(rig).sw == 0x6983  # blocked, even with the right cryptogram


def test_a_right_external_authentication_resets_the_counter() -> None:
    rig = selected(3)
    assert external_auth(rig, right=False).sw == 0x63C2
    assert external_auth(rig).ok
    assert external_auth(rig, right=False).sw == 0x63C2


def test_internal_authenticate_answers_the_cardauth_cryptogram() -> None:
    rig = selected(3)
    factor, challenge = bytes(range(8)), bytes(range(8, 16))
    answer = rig.send("0088000010" + (factor + challenge).hex() + "08")
    assert answer.ok
    assert answer.data == internal_auth_cryptogram(rig.keys.internal_auth, factor, challenge)


@pytest.mark.parametrize("generation", [2, 3])
def test_pin_wrong_counts_down_persistently_and_right_resets(generation: int) -> None:
    rig = selected(generation)
    pin = rig.card.pin
    wrong = "000000" if pin != "000000" else "111111"
    assert rig.send("00200000").sw == 0x63C3  # VERIFY without data: the counter
    assert rig.send("0020000003" + wrong).sw == 0x63C2
    rig.chip.power_on()
    assert rig.send(SELECT_SSSE).ok
    assert rig.send("00200000").sw == 0x63C2
    assert rig.send("0020000003" + pin).ok
    assert rig.send("00200000").sw == 0x63C3


def test_pin_blocks_after_three_wrong_and_then_refuses_the_right_one() -> None:
    rig = selected(2)
    pin = rig.card.pin
    wrong = "000000" if pin != "000000" else "111111"
    assert [rig.send("0020000003" + wrong).sw for _ in range(3)] == [0x63C2, 0x63C1, 0x63C0]
    assert rig.send("0020000003" + pin).sw == 0x6983
    assert rig.send("00200000").sw == 0x6983


def test_malformed_pin_blocks_are_wrong_data_and_cost_no_try() -> None:
    rig = selected(2)
    for block in ("01" + "12", "03" + "1A3456", "09" + "12" * 9, "03" + "12F456"):
        assert rig.send("002000 00" + block).sw == 0x6A80
    assert rig.send("00200000").sw == 0x63C3


def test_odd_pins_are_f_padded() -> None:
    card = replace(card_for(0, PERSON), pin="12345")
    chip = VirtualCard(
        [SsseApplication(card, PERSON, card_keys(MASTERS, card), CardMode.genuine)], generation=2
    )
    chip.power_on()
    chip.transmit(bytes.fromhex(SELECT_SSSE))
    assert chip.transmit(bytes.fromhex("002000000312345F")) == b"\x90\x00"


def test_change_pin_checks_the_old_one_and_sets_the_new_one() -> None:
    rig = selected(3)
    pin = rig.card.pin
    assert pin != "000000"
    assert rig.send("805E010008" + "000000" + "FF" + "1234567F").sw == 0x63C2  # costs a try
    assert rig.send("805E010008" + pin + "FF" + "1234567F").ok
    assert rig.send("00200000").sw == 0x63C3  # the right old PIN reset the counter
    assert rig.send("0020000003" + pin).sw == 0x63C2  # the old PIN is gone
    assert rig.send("00200000041234567F").ok
    assert rig.send("805E010005" + "1234567F" + "12").sw == 0x6A80  # no separator
    assert rig.send("805E010006" + "1234567F" + "FF" + "12").sw == 0x6A80  # new PIN too short


def test_pin_blocked_mode_starts_with_the_counter_at_zero() -> None:
    rig = selected(2, CardMode.pin_blocked)
    assert rig.send("00200000").sw == 0x6983
    assert rig.send("0020000003" + rig.card.pin).sw == 0x6983


def test_expired_mode_writes_a_2024_expiry_one_day_before_the_anniversary() -> None:
    rig = selected(3, CardMode.expired)
    issued = rig.card.issue_date
    expiry = dt.date(2024, issued.month, issued.day) - dt.timedelta(days=1)
    assert rig.send("00B2062C06").data == b"\x06\x04" + bytes.fromhex(f"{expiry:%Y%m%d}")


def test_power_on_forgets_selection_and_challenge() -> None:
    rig = selected(3)
    assert rig.send("00A4020002EF05").ok
    challenge = rig.send("0084000008").data
    rig.chip.power_on()
    assert rig.send(SELECT_SSSE).ok
    assert rig.send("00B2010012").sw == 0x6986
    factor = bytes(8)
    cryptogram = external_auth_cryptogram(rig.keys.external_auth, factor, challenge)
    assert rig.send("008200 0A 10" + (factor + cryptogram).hex()).sw == 0x6985
