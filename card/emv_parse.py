"""Parsers of the financial application's answers (DOMAIN.md §3.5): directory and
application FCIs, processing options, records and GENERATE AC, each into a frozen
Struct; and the account data (`FinancialRecord`) among the records' objects.

Invariant: any bytes give a value or `FinancialCardError`, never another exception
(fuzzed in tests/fuzz/test_pboc_fuzz.py); repeated objects and track-2 data that
disagree with 5A/5F24 are refused, as EMV Book 3 §10.2 asks.
"""

from __future__ import annotations

import datetime as dt

import msgspec

from card.emv_data import (
    AC_BYTES,
    AFL_ENTRIES_MAX,
    AID_BYTES_MAX,
    AID_BYTES_MIN,
    AIP_BYTES,
    ATC_BYTES,
    DIRECTORY_ENTRIES_MAX,
    IAD_BYTES_MAX,
    LABEL_BYTES_MAX,
    RECORDS_MAX,
    SFI_MAX,
    FinancialCardError,
    FinancialResult,
    Tag,
    parse_date_bcd,
    parse_dol,
    parse_pan,
    parse_track2,
)
from card.tlv import Tlv, TlvError, parse

HOLDER_ID_BYTES_MAX = 40


def _fail(result: FinancialResult, message: str) -> FinancialCardError:
    return FinancialCardError(result, message)


class AppEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One application of the payment directory (PPSE tag 61)."""

    aid: bytes
    label: str
    priority: int | None  # 1 highest .. 15; None: no priority given


class AppSelection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The FCI of the selected application."""

    aid: bytes  # the DF name the card answered (84)
    label: str
    priority: int | None
    pdol: bytes  # raw DOL (9F38); empty when the card asks for none


class ProcessingOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    aip: bytes  # application interchange profile (82), 2 bytes
    afl: bytes  # application file locator (94), 4 bytes per entry


class AcResponse(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """GENERATE AC answer, format 1 or 2."""

    cid: int
    atc: bytes
    ac: bytes
    iad: bytes

    def __repr__(self) -> str:
        return f"AcResponse(cid={self.cid:02X}, atc={self.atc.hex()}, ac=<masked>)"


def parse_tlv(raw: bytes, what: str) -> tuple[Tlv, ...]:
    try:
        return parse(raw)
    except TlvError as exc:
        raise FinancialCardError(
            FinancialResult.malformed_response, f"{what} is not BER-TLV: {exc}"
        ) from exc


def single_template(raw: bytes, tags: tuple[int, ...], what: str) -> Tlv:
    """The one top-level object of `raw`, which must carry one of `tags`."""
    objs = parse_tlv(raw, what)
    if len(objs) != 1 or objs[0].tag not in tags:
        found = ", ".join(f"{o.tag:X}" for o in objs) or "nothing"
        want = "/".join(f"{t:X}" for t in tags)
        raise _fail(FinancialResult.malformed_response, f"{what}: expected {want}, got {found}")
    return objs[0]


def _child(parent: Tlv, tag: int, what: str) -> Tlv:
    found = next((c for c in parent.children if c.tag == tag), None)
    if found is None:
        raise _fail(FinancialResult.missing_data, f"{what}: tag {tag:X} missing")
    return found


def _optional(parent: Tlv, tag: int) -> bytes | None:
    return next((c.value for c in parent.children if c.tag == tag), None)


def _label(raw: bytes | None) -> str:
    if raw is None:
        return ""
    if len(raw) > LABEL_BYTES_MAX or not all(0x20 <= b < 0x7F for b in raw):
        raise _fail(FinancialResult.invalid_data, "application label is not 1-16 printable ASCII")
    return raw.decode("ascii")


def _priority(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    if len(raw) != 1:
        raise _fail(FinancialResult.malformed_response, "priority indicator must be 1 byte")
    return (raw[0] & 0x0F) or None


def _aid(raw: bytes, what: str) -> bytes:
    if not AID_BYTES_MIN <= len(raw) <= AID_BYTES_MAX:
        raise _fail(FinancialResult.invalid_data, f"{what} must be 5-16 bytes, got {len(raw)}")
    return raw


# -- parsers of the card's answers -----------------------------------------------------


def parse_directory(fci: bytes) -> list[AppEntry]:
    """Applications of a PPSE/PSE FCI (6F / A5 / BF0C / 61...), by priority."""
    root = single_template(fci, (Tag.fci,), "directory FCI")
    prop = _child(root, Tag.fci_proprietary, "directory FCI")
    disc = _child(prop, Tag.fci_issuer_discretionary, "directory FCI")
    entries = [c for c in disc.children if c.tag == Tag.directory_entry]
    if len(entries) > DIRECTORY_ENTRIES_MAX:
        raise _fail(FinancialResult.invalid_data, "directory has too many entries")
    out = [
        AppEntry(
            aid=_aid(_child(e, Tag.aid, "directory entry").value, "ADF name (4F)"),
            label=_label(_optional(e, Tag.label)),
            priority=_priority(_optional(e, Tag.priority)),
        )
        for e in entries
    ]
    return sorted(out, key=lambda a: a.priority or 16)


def parse_app_fci(fci: bytes, selected: bytes) -> AppSelection:
    """FCI of an ADF; the DF name must be the selected AID or extend it (partial name)."""
    root = single_template(fci, (Tag.fci,), "application FCI")
    name = _aid(_child(root, Tag.df_name, "application FCI").value, "DF name (84)")
    if not name.startswith(selected):
        raise _fail(FinancialResult.invalid_data, "DF name does not match the selected AID")
    prop = _child(root, Tag.fci_proprietary, "application FCI")
    pdol = _optional(prop, Tag.pdol) or b""
    parse_dol(pdol)
    return AppSelection(
        aid=name,
        label=_label(_optional(prop, Tag.label)),
        priority=_priority(_optional(prop, Tag.priority)),
        pdol=pdol,
    )


def afl_records(afl: bytes) -> list[tuple[int, int]]:
    """(SFI, record number) pairs an AFL names, in order (EMV Book 3 §10.2)."""
    if not afl or len(afl) % 4 or len(afl) // 4 > AFL_ENTRIES_MAX:
        raise _fail(FinancialResult.invalid_data, f"AFL of {len(afl)} bytes")
    out: list[tuple[int, int]] = []
    for i in range(0, len(afl), 4):
        sfi_byte, first, last, offline = afl[i : i + 4]
        sfi = sfi_byte >> 3
        if sfi_byte & 0x07 or not 1 <= sfi <= SFI_MAX or not 1 <= first <= last:
            raise _fail(FinancialResult.invalid_data, f"AFL entry {afl[i : i + 4].hex()}")
        if offline > last - first + 1:
            raise _fail(FinancialResult.invalid_data, f"AFL entry {afl[i : i + 4].hex()}")
        out.extend((sfi, n) for n in range(first, last + 1))
        if len(out) > RECORDS_MAX:
            raise _fail(FinancialResult.invalid_data, f"AFL names over {RECORDS_MAX} records")
    return out


def parse_gpo(data: bytes) -> ProcessingOptions:
    """GET PROCESSING OPTIONS answer: format 1 (80 AIP AFL) or 2 (77 {82, 94})."""
    root = single_template(
        data, (Tag.response_format_1, Tag.response_format_2), "processing options"
    )
    if root.tag == Tag.response_format_1:
        aip, afl = root.value[:AIP_BYTES], root.value[AIP_BYTES:]
    else:
        aip = _child(root, Tag.aip, "processing options").value
        afl = _child(root, Tag.afl, "processing options").value
    if len(aip) != AIP_BYTES:
        raise _fail(FinancialResult.malformed_response, "AIP must be 2 bytes")
    afl_records(afl)
    return ProcessingOptions(aip=aip, afl=afl)


def parse_record(data: bytes) -> tuple[Tlv, ...]:
    """The data objects of one record (template 70)."""
    return single_template(data, (Tag.record,), "record").children


def parse_generate_ac(data: bytes) -> AcResponse:
    """GENERATE AC answer: format 1 (80 CID ATC AC IAD) or 2 (77 {9F27, 9F36, 9F26, 9F10})."""
    root = single_template(data, (Tag.response_format_1, Tag.response_format_2), "GENERATE AC")
    if root.tag == Tag.response_format_1:
        v = root.value
        if len(v) < 1 + ATC_BYTES + AC_BYTES:
            raise _fail(FinancialResult.malformed_response, "GENERATE AC format 1 too short")
        cid, atc, ac, iad = v[:1], v[1:3], v[3:11], v[11:]
    else:
        cid = _child(root, Tag.cid, "GENERATE AC").value
        atc = _child(root, Tag.atc, "GENERATE AC").value
        ac = _child(root, Tag.ac, "GENERATE AC").value
        iad = _optional(root, Tag.iad) or b""
    if len(cid) != 1 or len(atc) != ATC_BYTES or len(ac) != AC_BYTES:
        raise _fail(FinancialResult.malformed_response, "CID, ATC or AC of a wrong length")
    if len(iad) > IAD_BYTES_MAX:
        raise _fail(FinancialResult.malformed_response, "issuer application data too long")
    if cid[0] & 0xC0 == 0xC0:
        raise _fail(FinancialResult.invalid_data, f"CID {cid.hex()} names no cryptogram type")
    return AcResponse(cid=cid[0], atc=atc, ac=ac, iad=iad)


def mask(text: str, keep: int = 4) -> str:
    """All but the last `keep` characters hidden (STYLE.md §10)."""
    return "*" * max(len(text) - keep, 0) + text[-keep:]


class FinancialRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the card's records say about the account; PAN and ID masked in repr."""

    pan: str
    psn: str  # PAN sequence number, two digits ("00" when the card has none)
    expiry: dt.date
    effective: dt.date | None = None
    track2: bytes | None = None
    holder_id: str | None = None  # 9F61, the cardholder's ID number

    def __repr__(self) -> str:
        holder = "None" if self.holder_id is None else mask(self.holder_id)
        return (
            f"FinancialRecord(pan={mask(self.pan)}, psn={self.psn}, expiry={self.expiry}, "
            f"track2={'<masked>' if self.track2 else None}, holder_id={holder})"
        )


def financial_record(objects: dict[int, bytes]) -> FinancialRecord:
    """The account data among the records' objects; track 2 must agree with 5A/5F24."""
    for tag in (Tag.pan, Tag.expiry):
        if tag not in objects:
            raise FinancialCardError(FinancialResult.missing_data, f"tag {tag:X} not in records")
    pan = parse_pan(objects[Tag.pan])
    expiry = parse_date_bcd(objects[Tag.expiry], "expiry date (5F24)")
    effective = (
        parse_date_bcd(objects[Tag.effective], "effective date (5F25)")
        if Tag.effective in objects
        else None
    )
    psn_raw = objects.get(Tag.psn, b"\x00")
    if len(psn_raw) != 1 or not psn_raw.hex().isdigit():
        raise FinancialCardError(FinancialResult.invalid_data, "PAN sequence number (5F34)")
    track2 = objects.get(Tag.track2)
    if track2 is not None and parse_track2(track2) != (pan, f"{expiry:%y%m}"):
        raise FinancialCardError(FinancialResult.invalid_data, "track 2 disagrees with 5A/5F24")
    holder_raw = objects.get(Tag.holder_id)
    if holder_raw is not None and (
        len(holder_raw) > HOLDER_ID_BYTES_MAX or not all(0x20 <= b < 0x7F for b in holder_raw)
    ):
        raise FinancialCardError(FinancialResult.invalid_data, "cardholder ID (9F61)")
    return FinancialRecord(
        pan=pan,
        psn=psn_raw.hex(),
        expiry=expiry,
        effective=effective,
        track2=track2,
        holder_id=None if holder_raw is None else holder_raw.decode("ascii"),
    )


def collect_record_objects(objects: dict[int, bytes], found: tuple[Tlv, ...]) -> None:
    """Add one record's objects to those of the records read before it."""
    for obj in found:
        if obj.tag in objects:  # EMV Book 3 §10.2: a repeated object ends the transaction
            raise FinancialCardError(
                FinancialResult.malformed_response, f"tag {obj.tag:X} in two records"
            )
        objects[obj.tag] = obj.value
