"""The virtual card's PBOC application at the byte level, as a terminal sees it through
`VirtualCard.transmit`: the FCIs and records it was personalised with, and the status
words it answers to commands in the wrong phase, with wrong parameters or wrong data
(the card refuses, never raises). The cryptograms themselves are pinned against the
issuer in test_card_pboc.py."""

from __future__ import annotations

import random

import pytest

from card.emv_data import PPSE_NAME, PSE_NAME, UNIONPAY_DEBIT_AID, parse_track2
from card.tlv import Tlv, parse
from hsm.keystore import KeyStore
from hsm.soft_admin import demo_hierarchy
from simulators.card.card import VirtualCard
from simulators.card.keys import IssuerMasters, card_keys
from simulators.card.pboc import CDOL1, CDOL2, PbocApplication
from simulators.population import generate

H = bytes.fromhex
GPO = H("80A800000683040156015600")
CDOL1_DATA = bytes(29)
CDOL2_DATA = bytes(21)


def gen_ac(p1: int, data: bytes) -> bytes:
    return bytes((0x80, 0xAE, p1, 0x00, len(data))) + data + b"\x00"


def select(name: bytes) -> bytes:
    return bytes((0x00, 0xA4, 0x04, 0x00, len(name))) + name + b"\x00"


class Chip:
    def __init__(self, challenges: list[bytes] | None = None) -> None:
        self.population = generate(3, 1)
        self.card, self.person = self.population.card(0), self.population.persons[0]
        masters = IssuerMasters.from_keystore(KeyStore(demo_hierarchy(random.Random(1).randbytes)))
        pending = list(challenges or [])
        self.app = PbocApplication(
            self.card,
            self.person,
            card_keys(masters, self.card),
            random_bytes=lambda n: pending.pop(0)[:n],
        )
        self.icc = VirtualCard([self.app], generation=self.card.generation)
        self.icc.power_on()

    def send(self, command: bytes) -> tuple[bytes, int]:
        raw = self.icc.transmit(command)
        return raw[:-2], int.from_bytes(raw[-2:], "big")

    def ok(self, command: bytes) -> Tlv:
        data, sw = self.send(command)
        assert sw == 0x9000, f"{command.hex()} answered {sw:04X}"
        (obj,) = parse(data)
        return obj

    def initiated(self) -> None:
        self.ok(select(UNIONPAY_DEBIT_AID))
        self.ok(GPO)


def value(obj: Tlv, tag: int) -> bytes:
    found = obj.find(tag)
    assert found is not None, f"{tag:X} missing"
    return found.value


@pytest.mark.parametrize("name", [PPSE_NAME, PSE_NAME])
def test_directory_names_the_unionpay_debit_application(name: bytes) -> None:
    chip = Chip()
    fci = chip.ok(select(name))
    assert value(fci, 0x84) == name
    entry = fci.find(0x61)
    assert entry is not None
    assert value(entry, 0x4F) == UNIONPAY_DEBIT_AID and value(entry, 0x87) == b"\x01"


def test_application_fci_carries_the_pdol() -> None:
    fci = Chip().ok(select(UNIONPAY_DEBIT_AID))
    assert value(fci, 0x84) == UNIONPAY_DEBIT_AID and value(fci, 0x50) == b"PBOC DEBIT"
    assert value(fci, 0x9F38) == H("9F1A025F2A02")


def test_records_carry_the_cards_account_data() -> None:
    chip = Chip()
    chip.initiated()
    holder = chip.ok(H("00B2010C00"))
    account = chip.ok(H("00B2011400"))
    pan = chip.card.pan
    assert value(account, 0x5A).hex().upper().rstrip("F") == pan
    assert value(account, 0x5F24) == H(chip.card.expiry_date.strftime("%y%m%d"))
    assert value(account, 0x5F34) == b"\x00"
    assert value(account, 0x8C) == CDOL1 and value(account, 0x8D) == CDOL2
    assert parse_track2(value(holder, 0x57)) == (pan, chip.card.expiry_date.strftime("%y%m"))
    assert value(holder, 0x9F61) == chip.person.certno.encode()
    assert value(holder, 0x5F20) == b"YKT/CARDHOLDER"


def test_read_record_refuses_unknown_records_and_wrong_p2() -> None:
    chip = Chip()
    chip.initiated()
    assert chip.send(H("00B2020C00"))[1] == 0x6A83  # record 2 of SFI 1
    assert chip.send(H("00B2011C00"))[1] == 0x6A83  # SFI 3
    assert chip.send(H("00B2010800"))[1] == 0x6A86  # P2 low bits not 100
    assert chip.send(H("00B2000C00"))[1] == 0x6A86  # record 0


def test_gpo_is_answered_once_per_selection_and_checks_the_pdol_length() -> None:
    chip = Chip()
    chip.ok(select(UNIONPAY_DEBIT_AID))
    assert chip.send(H("80A8000005830301560100"))[1] == 0x6700  # 3 bytes, PDOL asks 4
    assert chip.send(H("80A80000069F040156015600"))[1] == 0x6A80  # not template 83
    assert chip.send(H("80A800000383040100"))[1] == 0x6A80  # not TLV
    assert chip.send(H("80A801000683040156015600"))[1] == 0x6A86
    gpo = chip.ok(GPO)
    assert value(gpo, 0x82) == H("0C00") and value(gpo, 0x94) == H("0801010010010100")
    assert chip.send(GPO)[1] == 0x6985  # already initiated


def test_commands_before_selecting_the_application_are_refused() -> None:
    chip = Chip()
    chip.ok(select(PPSE_NAME))  # the directory is current, not the application
    assert chip.send(GPO)[1] == 0x6985
    assert chip.send(H("00B2010C00"))[1] == 0x6985


def test_generate_ac_before_gpo_and_a_third_one_are_refused() -> None:
    chip = Chip()
    chip.ok(select(UNIONPAY_DEBIT_AID))
    assert chip.send(gen_ac(0x80, CDOL1_DATA))[1] == 0x6985
    chip.ok(GPO)
    chip.ok(gen_ac(0x80, CDOL1_DATA))
    chip.ok(gen_ac(0x40, CDOL2_DATA))
    assert chip.send(gen_ac(0x40, CDOL2_DATA))[1] == 0x6985


@pytest.mark.parametrize(
    ("p1", "data", "sw"),
    [
        (0x90, CDOL1_DATA, 0x6A86),  # CDA requested: not supported
        (0xC0, CDOL1_DATA, 0x6A86),  # RFU cryptogram type
        (0x80, bytes(28), 0x6700),  # CDOL1 asks for 29 bytes
    ],
)
def test_first_generate_ac_refuses_bad_parameters(p1: int, data: bytes, sw: int) -> None:
    chip = Chip()
    chip.initiated()
    assert chip.send(gen_ac(p1, data))[1] == sw
    assert chip.app.atc == 0  # nothing counted


def test_first_generate_ac_answers_arqc_to_a_tc_request_and_aac_to_an_aac_request() -> None:
    chip = Chip()
    chip.initiated()
    assert value(chip.ok(gen_ac(0x40, CDOL1_DATA)), 0x9F27) == b"\x80"  # online only
    chip.initiated()
    answer = chip.ok(gen_ac(0x00, CDOL1_DATA))
    assert value(answer, 0x9F27) == b"\x00" and value(answer, 0x9F36) == H("0002")
    assert chip.send(gen_ac(0x40, CDOL2_DATA))[1] == 0x6985  # declined: no second AC


def test_second_generate_ac_refuses_an_arqc_request_and_a_short_cdol2() -> None:
    chip = Chip()
    chip.initiated()
    chip.ok(gen_ac(0x80, CDOL1_DATA))
    assert chip.send(gen_ac(0x80, CDOL2_DATA))[1] == 0x6A86
    assert chip.send(gen_ac(0x40, CDOL2_DATA[:-1]))[1] == 0x6700
    answer = chip.ok(gen_ac(0x40, CDOL2_DATA))  # a zero ARPC: not authentic
    assert value(answer, 0x9F27) == b"\x00" and value(answer, 0x9F36) == H("0001")


def test_atc_survives_power_off_and_reselection() -> None:
    chip = Chip()
    for expected in (1, 2):
        chip.initiated()
        chip.ok(gen_ac(0x80, CDOL1_DATA))
        chip.icc.power_off()
        chip.icc.power_on()
        assert chip.app.atc == expected
    chip.initiated()
    chip.ok(select(UNIONPAY_DEBIT_AID))  # abandon after GPO: nothing counted
    assert chip.app.atc == 2


def test_power_on_forgets_a_pending_arqc() -> None:
    chip = Chip()
    chip.initiated()
    chip.ok(gen_ac(0x80, CDOL1_DATA))
    chip.icc.power_on()
    assert chip.send(gen_ac(0x40, CDOL2_DATA))[1] == 0x6985


def test_get_challenge_draws_eight_bytes_from_the_injected_source() -> None:
    chip = Chip(challenges=[H("0102030405060708"), H("1112131415161718")])
    chip.ok(select(UNIONPAY_DEBIT_AID))
    assert chip.send(H("0084000008")) == (H("0102030405060708"), 0x9000)
    assert chip.send(H("0084000004"))[1] == 0x6700
    assert chip.send(H("0084000008")) == (H("1112131415161718"), 0x9000)


def test_unknown_instructions_and_wrong_classes() -> None:
    chip = Chip()
    chip.ok(select(UNIONPAY_DEBIT_AID))
    assert chip.send(H("80CA9F3600"))[1] == 0x6D00  # GET DATA is not offered
    assert chip.send(H("00A800000683040156015600"))[1] == 0x6E00  # GPO needs CLA 80
    assert chip.send(H("80B2010C00"))[1] == 0x6E00
