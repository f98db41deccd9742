"""Data of the financial application (PBOC debit on the social security card, DOMAIN.md
§3.5), shared by the terminal flow (`card.pboc`, `card.emv_parse`) and the virtual card
(`simulators.card.pboc`): names, tags, limits, the failure kinds, data object lists
(DOL), numeric encodings, and the one definition of the bytes an application
cryptogram covers (`ac_mac_data`).

Invariants:
- every decoder here takes any bytes and returns a value or raises
  `FinancialCardError`, never anything else (fuzzed in tests/fuzz/test_pboc_fuzz.py);
- every length the card controls has a bound below;
- the card computes its cryptograms over `ac_mac_data` and the terminal reports the
  same bytes to the issuer, so what the issuer MACs is defined once.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping

PPSE_NAME = b"2PAY.SYS.DDF01"  # proximity (and, here, contact) payment system environment
PSE_NAME = b"1PAY.SYS.DDF01"
UNIONPAY_DEBIT_AID = bytes.fromhex("A000000333010101")

AID_BYTES_MIN, AID_BYTES_MAX = 5, 16  # ISO 7816-5 RID (5) + PIX (0-11)
LABEL_BYTES_MAX = 16
DIRECTORY_ENTRIES_MAX = 16
DOL_ENTRIES_MAX = 32
DOL_DATA_BYTES_MAX = 252  # 83 81 L + data must fit a short command APDU
AFL_ENTRIES_MAX = 16
RECORDS_MAX = 32  # records one AFL may name
IAD_BYTES_MAX = 32
SFI_MAX = 30
AC_BYTES = 8
ATC_BYTES = 2
AIP_BYTES = 2
CVR_BYTES = 4  # length byte 03 and three bytes (PBOC/VIS IAD bytes 4-7)


class Tag(enum.IntEnum):
    fci = 0x6F
    df_name = 0x84
    fci_proprietary = 0xA5
    fci_issuer_discretionary = 0xBF0C
    directory_entry = 0x61
    aid = 0x4F
    label = 0x50
    priority = 0x87
    pdol = 0x9F38
    language = 0x5F2D
    response_format_1 = 0x80
    response_format_2 = 0x77
    command_template = 0x83
    aip = 0x82
    afl = 0x94
    record = 0x70
    pan = 0x5A
    expiry = 0x5F24
    effective = 0x5F25
    psn = 0x5F34
    track2 = 0x57
    holder_name = 0x5F20
    issuer_country = 0x5F28
    usage_control = 0x9F07
    app_version = 0x9F08
    cdol1 = 0x8C
    cdol2 = 0x8D
    holder_id = 0x9F61  # PBOC: cardholder ID number (持卡人证件号)
    holder_id_type = 0x9F62  # PBOC: 00 resident ID card
    amount = 0x9F02
    amount_other = 0x9F03
    terminal_country = 0x9F1A
    tvr = 0x95
    currency = 0x5F2A
    txn_date = 0x9A
    txn_type = 0x9C
    unpredictable_number = 0x9F37
    arc = 0x8A
    issuer_auth_data = 0x91
    cid = 0x9F27
    atc = 0x9F36
    ac = 0x9F26
    iad = 0x9F10


# Tags of format n (BCD numbers): a DOL pads them on the left (EMV Book 3 §5.4).
NUMERIC_TAGS = frozenset(
    {
        Tag.amount,
        Tag.amount_other,
        Tag.terminal_country,
        Tag.currency,
        Tag.txn_date,
        Tag.txn_type,
        Tag.expiry,
        Tag.effective,
        Tag.psn,
        Tag.issuer_country,
    }
)


class FinancialResult(enum.IntEnum):
    """Why a financial-application step failed; stable numbers."""

    reader_failed = 1  # the reader reported an error (chained)
    card_refused = 2  # a status word other than 9000 where the flow needs 9000
    application_not_found = 3  # SELECT answered 6A82: no such application on the chip
    malformed_response = 4  # not TLV, wrong template, wrong length of a fixed field
    missing_data = 5  # a mandatory data object is absent
    invalid_data = 6  # a data object is present but its value is impossible
    deadline_exceeded = 7  # the step's budget ran out between two commands


class FinancialCardError(Exception):
    """One failure of the financial application; `result` says which kind, `sw` the
    status word when the card refused."""

    def __init__(self, result: FinancialResult, message: str, *, sw: int | None = None) -> None:
        super().__init__(f"{result.name}: {message}")
        self.result = result
        self.sw = sw


class CryptogramType(enum.IntEnum):
    """Bits 8-7 of the CID (9F27) and of GENERATE AC P1."""

    aac = 0x00
    tc = 0x40
    arqc = 0x80


def _fail(result: FinancialResult, message: str) -> FinancialCardError:
    return FinancialCardError(result, message)


# -- data object lists --------------------------------------------------------------------


def parse_dol(raw: bytes) -> tuple[tuple[int, int], ...]:
    """(tag, length) pairs of a DOL (EMV Book 3 §5.4): BER tags, one length byte."""
    out: list[tuple[int, int]] = []
    pos = 0
    while pos < len(raw):
        start = pos
        pos += 1
        if raw[start] & 0x1F == 0x1F:  # more tag bytes follow, the last with bit 8 clear
            while pos < len(raw) and pos - start < 3 and raw[pos] & 0x80:
                pos += 1
            pos += 1
        if pos - start > 3 or pos >= len(raw):  # tag too long, or no length byte
            raise _fail(FinancialResult.malformed_response, f"DOL malformed at offset {start}")
        out.append((int.from_bytes(raw[start:pos], "big"), raw[pos]))
        pos += 1
        if len(out) > DOL_ENTRIES_MAX:
            raise _fail(FinancialResult.invalid_data, f"DOL longer than {DOL_ENTRIES_MAX} entries")
    if dol_length(out) > DOL_DATA_BYTES_MAX:
        raise _fail(FinancialResult.invalid_data, f"DOL asks for over {DOL_DATA_BYTES_MAX} bytes")
    return tuple(out)


def dol_length(entries: tuple[tuple[int, int], ...] | list[tuple[int, int]]) -> int:
    return sum(length for _, length in entries)


def build_dol(entries: tuple[tuple[int, int], ...], values: Mapping[int, bytes]) -> bytes:
    """The data a DOL asks for; unknown tags zero-filled, other lengths fitted: numbers
    keep their rightmost bytes and pad on the left, anything else the opposite."""
    out = bytearray()
    for tag, length in entries:
        value = values.get(tag, bytes(length))
        if tag in NUMERIC_TAGS:
            value = value[-length:] if length else b""
            out += value.rjust(length, b"\x00")
        else:
            out += value[:length].ljust(length, b"\x00")
    return bytes(out)


def split_dol(entries: tuple[tuple[int, int], ...], data: bytes) -> dict[int, bytes]:
    """The inverse of `build_dol` for a card; the caller has checked the length."""
    out: dict[int, bytes] = {}
    pos = 0
    for tag, length in entries:
        out[tag] = data[pos : pos + length]
        pos += length
    return out


# -- numbers and dates ---------------------------------------------------------------------


def bcd(number: int, length: int) -> bytes:
    """`number` as `length` bytes of BCD, e.g. 12345 fen -> 00 00 00 01 23 45."""
    if not 0 <= number < 10 ** (2 * length):
        raise ValueError(f"{number} does not fit {length} BCD bytes")
    return bytes.fromhex(f"{number:0{2 * length}d}")


def date_bcd(day: dt.date) -> bytes:
    return bytes.fromhex(day.strftime("%y%m%d"))


def parse_date_bcd(raw: bytes, what: str) -> dt.date:
    """YYMMDD; years 50-99 are 19YY, 00-49 20YY (EMV Book 4 §6.7.3)."""
    text = raw.hex()
    if len(raw) != 3 or not text.isdigit():
        raise _fail(FinancialResult.invalid_data, f"{what} is not a YYMMDD date")
    year = int(text[:2])
    try:
        return dt.date(year + (1900 if year >= 50 else 2000), int(text[2:4]), int(text[4:]))
    except ValueError as exc:
        raise _fail(FinancialResult.invalid_data, f"{what} is not a calendar date") from exc


def pan_bcd(pan: str) -> bytes:
    """5A: compressed numeric, padded with F on the right."""
    return bytes.fromhex(pan + "F" * (len(pan) % 2))


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def parse_pan(raw: bytes) -> str:
    pan = raw.hex().upper().rstrip("F")
    if not 12 <= len(pan) <= 19 or not pan.isdigit() or len(raw) != (len(pan) + 1) // 2:
        raise _fail(FinancialResult.invalid_data, "PAN (5A) is not 12-19 digits")
    if not _luhn_ok(pan):
        raise _fail(FinancialResult.invalid_data, "PAN (5A) fails the Luhn check")
    return pan


def track2(pan: str, expiry: dt.date, service_code: str, discretionary: str) -> bytes:
    """57: PAN 'D' YYMM service code discretionary data, F-padded (EMV Book 3 Annex A)."""
    text = f"{pan}D{expiry:%y%m}{service_code}{discretionary}"
    return bytes.fromhex(text + "F" * (len(text) % 2))


def parse_track2(raw: bytes) -> tuple[str, str]:
    """(PAN, YYMM) of a track-2 equivalent; its structure checked."""
    text = raw.hex().upper().rstrip("F")
    pan, sep, rest = text.partition("D")
    if not sep or not pan.isdigit() or not rest.isdigit() or len(rest) < 7:
        raise _fail(FinancialResult.invalid_data, "track 2 equivalent (57) is malformed")
    return pan, rest[:4]


def cvr_from_iad(iad: bytes) -> bytes:
    """The card verification results in a PBOC/VIS issuer application data: byte 1 the
    length of the discretionary part, 2 the key index, 3 the cryptogram version, 4-7
    the CVR (its own length 03 first)."""
    if len(iad) < 3 + CVR_BYTES or iad[0] + 1 > len(iad) or iad[0] < 6 or iad[3] != 3:
        raise _fail(FinancialResult.invalid_data, "issuer application data without a CVR")
    return iad[3 : 3 + CVR_BYTES]


def ac_mac_data(dol_data: bytes, aip: bytes, atc: bytes, iad: bytes) -> bytes:
    """The bytes an application cryptogram covers on this card (DOMAIN.md §3.5):
    the terminal's DOL data (CDOL1 for the first GENERATE AC, CDOL1 then CDOL2 for the
    second) || AIP || ATC || CVR (4 bytes, from the IAD). The issuer MACs exactly this."""
    return dol_data + aip + atc + cvr_from_iad(iad)
