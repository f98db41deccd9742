"""The decoders of the financial application's answers and the encodings the terminal
sends: hand-built EMV structures (formats 1 and 2, published tag layouts) parse to the
expected values, DOLs are filled as EMV Book 3 §5.4 says, and every malformed or
implausible answer is a FinancialCardError with the right result kind."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from card.emv_data import (
    FinancialCardError,
    FinancialResult,
    ac_mac_data,
    bcd,
    build_dol,
    cvr_from_iad,
    date_bcd,
    pan_bcd,
    parse_date_bcd,
    parse_dol,
    parse_pan,
    parse_track2,
    split_dol,
    track2,
)
from card.emv_parse import (
    afl_records,
    collect_record_objects,
    financial_record,
    parse_app_fci,
    parse_directory,
    parse_generate_ac,
    parse_gpo,
    parse_record,
)
from card.tlv import Tlv, encode

H = bytes.fromhex
AID = H("A000000333010101")
PAN = "6217000010000000003"  # Luhn-valid, 19 digits
CDOL1 = H("9F02069F03069F1A0295055F2A029A039C019F3704")


def refused(result: FinancialResult) -> Any:
    """pytest.raises for a FinancialCardError of one result kind."""
    return pytest.raises(FinancialCardError, check=lambda e: e.result is result)


def test_dol_entries_with_one_two_and_three_byte_tags() -> None:
    assert parse_dol(CDOL1) == (
        (0x9F02, 6),
        (0x9F03, 6),
        (0x9F1A, 2),
        (0x95, 5),
        (0x5F2A, 2),
        (0x9A, 3),
        (0x9C, 1),
        (0x9F37, 4),
    )
    assert parse_dol(H("DF810104")) == ((0xDF8101, 4),)
    assert parse_dol(b"") == ()


@pytest.mark.parametrize("raw", ["9F", "9F02", "DF818101", "DF8181", "9F02FF" * 1])
def test_truncated_or_oversized_dols_are_refused(raw: str) -> None:
    with pytest.raises(FinancialCardError):
        parse_dol(H(raw))


def test_a_dol_asking_for_more_than_a_command_can_carry_is_refused() -> None:
    with refused(FinancialResult.invalid_data):
        parse_dol(H("9F02FF") + H("9F0305"))


def test_build_dol_fits_numbers_on_the_left_and_other_data_on_the_right() -> None:
    """Numeric (n) values keep their rightmost bytes and pad with leading zeros;
    others keep the leftmost and pad with trailing zeros; unknown tags are zeros."""
    entries = parse_dol(H("9F02049F02089F37029F37069F7C03"))
    values = {0x9F02: H("000000012345"), 0x9F37: H("1A2B3C4D")}
    assert build_dol(entries, values) == H("0001234500000000000123451A2B1A2B3C4D0000000000")
    data = build_dol(parse_dol(CDOL1), {0x9F02: bcd(100, 6), 0x9C: H("00")})
    assert split_dol(parse_dol(CDOL1), data)[0x9F02] == H("000000000100")


def test_numbers_and_dates_in_bcd() -> None:
    assert bcd(12_345, 6) == H("000000012345") and bcd(156, 2) == H("0156")
    with pytest.raises(ValueError, match="does not fit"):
        bcd(1000, 1)
    with pytest.raises(ValueError, match="does not fit"):
        bcd(-1, 2)
    assert date_bcd(dt.date(2026, 3, 1)) == H("260301")
    assert parse_date_bcd(H("491231"), "d") == dt.date(2049, 12, 31)
    assert parse_date_bcd(H("500101"), "d") == dt.date(1950, 1, 1)
    for bad in ("260230", "2613AA", "2603"):
        with refused(FinancialResult.invalid_data):
            parse_date_bcd(H(bad), "d")


def test_pan_and_track2_round_trip_and_checks() -> None:
    assert pan_bcd(PAN) == H("6217000010000000003F") and parse_pan(pan_bcd(PAN)) == PAN
    with refused(FinancialResult.invalid_data):
        parse_pan(pan_bcd(PAN[:-1] + "4"))  # Luhn
    with refused(FinancialResult.invalid_data):
        parse_pan(pan_bcd(PAN) + H("FF"))  # padding beyond one nibble
    t2 = track2(PAN, dt.date(2031, 7, 31), "220", "0000")
    assert t2.hex().upper() == PAN + "D3107220" + "0000" + "F"
    assert parse_track2(t2) == (PAN, "3107")
    with refused(FinancialResult.invalid_data):
        parse_track2(H("6217000010000000003F"))  # no separator


def test_directory_entries_sorted_by_priority() -> None:
    first = Tlv(0x61, children=(Tlv(0x4F, AID),))  # no priority: goes last; no label
    second = Tlv(0x61, children=(Tlv(0x4F, H("A000000333010102")), Tlv(0x87, b"\x82")))
    directory = Tlv(0xBF0C, children=(first, second))
    raw = encode(
        Tlv(0x6F, children=(Tlv(0x84, b"2PAY.SYS.DDF01"), Tlv(0xA5, children=(directory,))))
    )
    entries = parse_directory(raw)
    assert [e.aid.hex() for e in entries] == ["a000000333010102", "a000000333010101"]
    assert entries[0].priority == 2 and entries[1].priority is None and entries[1].label == ""


def test_directory_without_bf0c_is_missing_data() -> None:
    with refused(FinancialResult.missing_data):
        parse_directory(H("6F10840E325041592E5359532E4444463031"))


def fci(name: bytes, *proprietary: Tlv) -> bytes:
    return encode(Tlv(0x6F, children=(Tlv(0x84, name), Tlv(0xA5, children=proprietary))))


def test_application_fci_with_and_without_pdol() -> None:
    raw = fci(AID, Tlv(0x50, b"PBOC DEBIT"), Tlv(0x87, b"\x01"), Tlv(0x9F38, H("9F1A02")))
    selection = parse_app_fci(raw, AID)
    assert selection.label == "PBOC DEBIT" and selection.priority == 1
    assert selection.pdol == H("9F1A02")
    bare = parse_app_fci(fci(AID, Tlv(0x50, b"X")), AID[:7])  # partial selection: a prefix
    assert bare.pdol == b"" and bare.priority is None


@pytest.mark.parametrize(
    "proprietary",
    [Tlv(0x50, b"\x01\x02"), Tlv(0x50, b"A" * 17), Tlv(0x87, b"\x01\x02"), Tlv(0x9F38, H("9F"))],
)
def test_application_fci_with_an_implausible_object_is_refused(proprietary: Tlv) -> None:
    with pytest.raises(FinancialCardError):
        parse_app_fci(fci(AID, proprietary), AID)


def test_application_fci_for_another_aid_is_refused() -> None:
    with refused(FinancialResult.invalid_data):
        parse_app_fci(fci(H("A000000333010102"), Tlv(0x50, b"X")), AID)


def test_processing_options_format_1_and_2() -> None:
    fmt1 = parse_gpo(H("800A0C000801010010010200"))
    assert fmt1.aip == H("0C00") and fmt1.afl == H("0801010010010200")
    fmt2 = parse_gpo(H("770E82020C0094080801010010010100"))
    assert fmt2 == parse_gpo(H("770E82020C0094080801010010010100"))
    assert afl_records(fmt1.afl) == [(1, 1), (2, 1), (2, 2)]


@pytest.mark.parametrize(
    ("afl", "why"),
    [
        ("", "empty"),
        ("080101", "not a multiple of 4"),
        ("09010100", "low bits of the SFI byte"),
        ("F8010100", "SFI 31"),
        ("08020100", "last before first"),
        ("08000100", "record 0"),
        ("08010102", "more offline records than named"),
        ("08012100", "over 32 records"),
    ],
)
def test_implausible_afls_are_refused(afl: str, why: str) -> None:
    with refused(FinancialResult.invalid_data):
        afl_records(H(afl))


def test_generate_ac_format_1_and_2() -> None:
    fmt1 = parse_generate_ac(H("8013800001112233445566778807010103A0000001"))
    fmt2 = parse_generate_ac(
        encode(
            Tlv(
                0x77,
                children=(
                    Tlv(0x9F27, H("80")),
                    Tlv(0x9F36, H("0001")),
                    Tlv(0x9F26, H("1122334455667788")),
                    Tlv(0x9F10, H("07010103A0000001")),
                ),
            )
        )
    )
    assert fmt1 == fmt2 and fmt1.cid == 0x80 and fmt1.atc == H("0001")
    assert "1122334455667788" not in repr(fmt1).lower()


@pytest.mark.parametrize(
    ("raw", "result"),
    [
        ("800A80000111223344556677", FinancialResult.malformed_response),  # AC 7 bytes
        ("8013C0000111223344556677880701010300000001", FinancialResult.invalid_data),
        ("77099F3602000191020000", FinancialResult.missing_data),  # no 9F27
        ("9F2701809F360200019F26081122334455667788", FinancialResult.malformed_response),
        ("77039F27", FinancialResult.malformed_response),  # not TLV
    ],
)
def test_malformed_generate_ac_answers(raw: str, result: FinancialResult) -> None:
    with refused(result):
        parse_generate_ac(H(raw))


def test_mac_data_is_dol_data_aip_atc_and_the_cvr_from_the_iad() -> None:
    iad = H("07010103A0000001")
    assert cvr_from_iad(iad) == H("03A00000")
    assert ac_mac_data(H("AABB"), H("0C00"), H("0007"), iad) == H("AABB0C00000703A00000")
    for bad in ("0601010300", "07010104A0000001", "0F010103A0000001"):
        with refused(FinancialResult.invalid_data):
            cvr_from_iad(H(bad))


def records() -> dict[int, bytes]:
    objects: dict[int, bytes] = {}
    collect_record_objects(objects, parse_record(H("700C") + H("5A0A") + pan_bcd(PAN)))
    collect_record_objects(objects, parse_record(H("700A5F24033107315F340101")))
    return objects


def test_financial_record_from_the_objects_of_two_records() -> None:
    record = financial_record(records())
    assert record.pan == PAN and record.psn == "01" and record.expiry == dt.date(2031, 7, 31)
    assert record.track2 is None and record.holder_id is None and PAN not in repr(record)


def test_an_object_repeated_in_two_records_is_refused() -> None:
    objects = records()
    with refused(FinancialResult.malformed_response):
        collect_record_objects(objects, parse_record(H("70055F24033107")))


def test_track2_must_agree_with_the_pan_and_expiry() -> None:
    objects = records()
    objects[0x57] = track2(PAN, dt.date(2032, 7, 31), "220", "0")
    with refused(FinancialResult.invalid_data):
        financial_record(objects)
    objects[0x57] = track2(PAN, dt.date(2031, 7, 31), "220", "0")
    assert financial_record(objects).track2 == objects[0x57]


def test_records_without_pan_or_expiry_are_missing_data() -> None:
    objects = records()
    del objects[0x5A]
    with refused(FinancialResult.missing_data):
        financial_record(objects)


def test_a_record_outside_template_70_is_malformed() -> None:
    with refused(FinancialResult.malformed_response):
        parse_record(H("5A0A") + pan_bcd(PAN))
