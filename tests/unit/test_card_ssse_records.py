"""Strict decoding of SSSE card data (card.ssse_records, card.ssse.decode_fci): each
malformed field is refused with a CardError naming the right result — the card
identification code with the standard's −20, everything else `card_data_malformed` —
and well-formed fields decode to the values DOMAIN.md §3.2 describes."""

from __future__ import annotations

import datetime as dt

import pytest

from card.results import CardError, CardResult
from card.ssse import SSSE_AID, CardAlgorithm, decode_fci, pin_bcd
from card.ssse_records import (
    atr_historical_bytes,
    decode_bcd_date,
    decode_card_no,
    decode_card_sn,
    decode_certno,
    decode_holder,
    decode_name,
    decode_record,
    decode_spec_version,
)
from simulators.card.card import make_atr


def malformed(
    result: CardResult = CardResult.card_data_malformed,
) -> pytest.RaisesExc[CardError]:
    return pytest.raises(CardError, check=lambda e: e.result is result)


def test_bcd_dates_decode_and_impossible_dates_are_refused() -> None:
    assert decode_bcd_date(bytes.fromhex("20240229")) == dt.date(2024, 2, 29)
    for raw in ("20230229", "2024130A", "202401", "20241301"):
        with malformed():
            decode_bcd_date(bytes.fromhex(raw))


def test_card_sn_needs_16_bytes_and_a_region_code() -> None:
    sn = "330300D15600000599110145FFFFFFFF"  # DOMAIN.md §3.2's observed example
    assert decode_card_sn(bytes.fromhex(sn)) == sn
    with malformed(CardResult.card_id_format_error):
        decode_card_sn(bytes.fromhex(sn)[:15])
    with malformed(CardResult.card_id_format_error):
        decode_card_sn(bytes.fromhex("A30300" + sn[6:]))
    assert int(CardResult.card_id_format_error) == -20


def test_spec_version_gives_the_generation() -> None:
    assert decode_spec_version(b"3.00") == ("3.00", 3)
    assert decode_spec_version(b"2.00") == ("2.00", 2)
    for raw in (b"4.00", b"3,00", b"3.0", b"3.0\x00"):
        with malformed():
            decode_spec_version(raw)


def test_card_number_reads_the_first_nine_characters() -> None:
    assert decode_card_no(b"S00000001") == "S00000001"
    assert decode_card_no(b"A12345678XYZ") == "A12345678"
    for raw in (b"S0000001", b"S000 0001", b"S0000000\x01"):
        with malformed():
            decode_card_no(raw)


def test_certno_is_17_digits_and_a_check_character() -> None:
    assert decode_certno(b"51010419800229203X") == "51010419800229203X"
    for raw in (b"51010419800229203x", b"5101041980022920", b"5101041980022920AX"):
        with malformed():
            decode_certno(raw)


def test_name_joins_the_extension_and_trims_either_padding() -> None:
    name = "努尔麦麦提·阿卜杜热西提·买买提江".encode("gbk")
    head, tail = name[:30], name[30:].ljust(20, b"\x00")
    assert decode_name(head, tail) == "努尔麦麦提·阿卜杜热西提·买买提江"
    assert decode_name("王芳".encode("gbk").ljust(30, b" "), None) == "王芳"
    assert decode_name("王芳".encode("gbk").ljust(30, b"\x00"), b"\x00" * 20) == "王芳"


@pytest.mark.parametrize(
    ("name", "extension"),
    [
        (b"\x00" * 30, b"\x00" * 20),  # empty
        ("王".encode("gbk")[:1].ljust(30, b"\x00"), None),  # half a character
        (b"\x81\x30\x81\x30".ljust(30, b"\x00"), None),  # GB 18030 four-byte: not GBK
        ("王|芳".encode("gbk").ljust(30, b"\x00"), None),
        ("王\x00芳".encode("gbk").ljust(30, b"\x00"), None),
        ("王芳".encode("gbk").ljust(29, b"\x00"), None),  # 29 bytes
        ("王芳".encode("gbk").ljust(30, b"\x00"), b"\x00" * 19),
    ],
)
def test_malformed_names_are_refused(name: bytes, extension: bytes | None) -> None:
    with malformed():
        decode_name(name, extension)


def test_holder_needs_every_record_but_the_extension() -> None:
    records = {
        0x08: b"51010419800229203X",
        0x09: "王芳".encode("gbk").ljust(30, b"\x00"),
        0x0A: b"2",
        0x0B: b"\x56",
        0x0C: bytes.fromhex("510104"),
        0x0D: bytes.fromhex("19800229"),
    }
    holder = decode_holder(records)
    assert (holder.name, holder.nation, holder.birthplace) == ("王芳", "56", "510104")
    with malformed():
        decode_holder({**records, 0x0B: b"\x5a"})  # not BCD
    with malformed():
        decode_holder({**records, 0x0A: b"3"})  # not a GB/T 2261.1 gender code
    with malformed():
        decode_holder({k: v for k, v in records.items() if k != 0x0D})


def test_record_answers_must_be_one_tlv_with_the_asked_tag() -> None:
    assert decode_record(b"\x03\x043.00", 0x03) == b"3.00"
    for raw in (b"", b"\x03", b"\x04\x043.00", b"\x03\x053.00", b"\x03\x033.00"):
        with malformed():
            decode_record(raw, 0x03)


def test_fci_gives_the_algorithm_and_refuses_other_applications() -> None:
    aid = SSSE_AID.hex()

    def fci(proprietary: str) -> bytes:
        body = f"840F{aid}" + (f"A5{len(proprietary) // 2:02X}{proprietary}" if proprietary else "")
        return bytes.fromhex(f"6F{len(body) // 2:02X}{body}")

    assert decode_fci(fci("9F0C03860101")) is CardAlgorithm.TDES
    assert decode_fci(fci("9F0C03860104")) is CardAlgorithm.SM4
    assert decode_fci(fci("")) is CardAlgorithm.TDES  # absent 9F0C means 01
    with malformed(CardResult.unsupported_algorithm):
        decode_fci(fci("9F0C03860102"))
    with malformed():
        decode_fci(fci("9F0C028601"))
    with malformed():
        decode_fci(bytes.fromhex("6F05840F"))
    with malformed(CardResult.wrong_card_type):
        decode_fci(bytes.fromhex("6F0A8408A000000333010101"))


def test_atr_historical_bytes_are_parsed_strictly() -> None:
    atr = make_atr(b"YKT-SSC-G3")
    assert atr_historical_bytes(atr) == b"YKT-SSC-G3"
    assert atr_historical_bytes(bytes.fromhex("3B0212AB")) == bytes.fromhex("12AB")  # T=0 only
    broken = (atr[:-1] + bytes((atr[-1] ^ 1,)), atr[:-1], atr + b"\x00", b"\x3a" + atr[1:], b"\x3b")
    for raw in broken:
        with malformed():
            atr_historical_bytes(raw)


def test_pins_are_bcd_and_f_padded() -> None:
    assert pin_bcd("123456") == bytes.fromhex("123456")
    assert pin_bcd("12345") == bytes.fromhex("12345F")
    with malformed(CardResult.pin_length_error):
        pin_bcd("1" * 17)
