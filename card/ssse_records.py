"""The SSSE application's records (DOMAIN.md §3.2) as typed values, and their strict
decoders.

EF05 (card basic info) and EF06 (card holder) hold one-byte-tag TLV records: tag =
record identifier, one length byte, value. Every decoder here takes the card's bytes
as they came and either returns a value or raises `CardError` — never another
exception, whatever the bytes (fuzzed in tests/fuzz/test_card_fuzz.py). The card's
identification code (EF05/01) fails with `card_id_format_error` (−20, the standard's
code); any other field with `card_data_malformed`.

Encodings, with the choices the table leaves open:
- dates: 4 bytes packed BCD yyyymmdd, a real calendar date;
- ASCII fields: printable ASCII only; trailing spaces are padding;
- names (09, 30 bytes, and the 2.0/3.0 extension 4E, 20 bytes): GBK, padded at the
  end with 00 (our virtual card) or 20 (accepted too). GBK trail bytes are 40..FE, so
  neither padding byte can end a character and trimming them is unambiguous. The name
  is 09 ‖ 4E, each trimmed; control characters and '|' (the iReadCardBas separator)
  are refused. GB 18030 four-byte characters are not GBK and are refused.
- nation (0B): one byte, packed BCD of the two-digit GB/T 3304 code (01 = 汉族);
- birth place (0C): three bytes, packed BCD of the six-digit region code;
- gender (0A): one ASCII digit of GB/T 2261.1 (0 unknown, 1 male, 2 female, 9 other);
- card number (07): nine ASCII characters; a longer record is read for its first 9
  (DOMAIN.md §3.2);
- social security number (08): 18 ASCII, 17 digits and a digit or X. The check digit
  is not verified here: the engine matches the number against its register.
"""

from __future__ import annotations

import datetime as dt
import enum
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from card.results import CardError, CardResult

# EF05 record identifiers.
TAG_CARD_SN = 0x01
TAG_CARD_TYPE = 0x02
TAG_SPEC_VERSION = 0x03
TAG_INIT_ORG = 0x04
TAG_ISSUE_DATE = 0x05
TAG_EXPIRY_DATE = 0x06
TAG_CARD_NO = 0x07
# EF06 record identifiers.
TAG_CERTNO = 0x08
TAG_NAME = 0x09
TAG_GENDER = 0x0A
TAG_NATION = 0x0B
TAG_BIRTHPLACE = 0x0C
TAG_BIRTH_DATE = 0x0D
TAG_NAME_EXT = 0x4E

EF05_TAGS = (0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07)
EF06_TAGS = (0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x4E)

# Value length of every record, from DOMAIN.md §3.2's table.
RECORD_BYTES: dict[int, int] = {
    TAG_CARD_SN: 16,
    TAG_CARD_TYPE: 1,
    TAG_SPEC_VERSION: 4,
    TAG_INIT_ORG: 12,
    TAG_ISSUE_DATE: 4,
    TAG_EXPIRY_DATE: 4,
    TAG_CARD_NO: 9,
    TAG_CERTNO: 18,
    TAG_NAME: 30,
    TAG_GENDER: 1,
    TAG_NATION: 1,
    TAG_BIRTHPLACE: 3,
    TAG_BIRTH_DATE: 4,
    TAG_NAME_EXT: 20,
}
CARD_NO_RECORD_BYTES_MAX = 32  # a longer 07 is read for its first 9 characters
NAME_PADDING = b"\x00 "
GENDERS = frozenset("0129")
ATR_BYTES_MAX = 33  # ISO/IEC 7816-3 §8.2


class CardAlgorithm(enum.Enum):
    """The algorithm of the card's authentication keys, from the SSSE FCI."""

    TDES = "3DES"  # generation 2
    SM4 = "SM4"  # generation 3


def _malformed(what: str, why: str) -> CardError:
    return CardError(CardResult.card_data_malformed, f"{what}: {why}")


def _mask(text: str, keep_start: int, keep_end: int = 0) -> str:
    """Fixed-width mask: the hidden part's length is not shown either."""
    end = text[len(text) - keep_end :] if keep_end and len(text) > keep_start + keep_end else ""
    return text[:keep_start] + "***" + end


@dataclass(frozen=True, repr=False)
class CardBasics:
    """EF05 and the ATR. `repr` masks the card identification code and card number."""

    atr: bytes
    card_sn: str  # 32 upper-case hex digits
    card_type: str
    spec_version: str  # "2.00", "3.00"
    generation: int  # first digit of spec_version
    algorithm: CardAlgorithm
    init_org: str
    issue_date: dt.date
    expiry_date: dt.date
    card_no: str

    @property
    def region(self) -> str:
        """The issuing region's six-digit code (发卡地区行政区划代码, AAB301)."""
        return self.card_sn[:6]

    @property
    def historical_bytes(self) -> bytes:
        """The ATR's historical bytes (卡复位信息 of iReadCardBas)."""
        return atr_historical_bytes(self.atr)

    def ensure_valid_on(self, today: dt.date) -> None:
        """Refuse a card whose chip expiry date (EF05/06) lies before `today`; the card
        is valid through its expiry date. `today` is the caller's clock, not ours."""
        if today > self.expiry_date:
            raise CardError(
                CardResult.card_expired, f"the card expired on {self.expiry_date.isoformat()}"
            )

    def __repr__(self) -> str:
        return (
            f"CardBasics(card_sn={_mask(self.card_sn, 6)}, card_no={_mask(self.card_no, 1)}, "
            f"gen={self.generation}, algorithm={self.algorithm.name}, "
            f"expiry={self.expiry_date.isoformat()})"
        )


@dataclass(frozen=True, repr=False)
class CardHolder:
    """EF06. `repr` masks the social security number and the name."""

    certno: str
    name: str
    gender: str
    nation: str  # two-digit GB/T 3304 code
    birthplace: str  # six-digit region code
    birth_date: dt.date

    def __repr__(self) -> str:
        return (
            f"CardHolder(certno={_mask(self.certno, 6, 1)}, name={_mask(self.name, 1)}, "
            f"gender={self.gender})"
        )


def decode_record(raw: bytes, tag: int) -> bytes:
    """The value of a READ RECORD answer: exactly one simple TLV with `tag`."""
    if len(raw) < 2:
        raise _malformed(f"record {tag:02X}", f"{len(raw)} bytes, no TLV header")
    if raw[0] != tag:
        raise _malformed(f"record {tag:02X}", f"the card answered record {raw[0]:02X}")
    if raw[1] != len(raw) - 2:
        raise _malformed(
            f"record {tag:02X}", f"length byte {raw[1]} but {len(raw) - 2} value bytes"
        )
    return bytes(raw[2:])


def _exact(raw: bytes, tag: int, what: str) -> bytes:
    if len(raw) != RECORD_BYTES[tag]:
        raise _malformed(what, f"{len(raw)} bytes instead of {RECORD_BYTES[tag]}")
    return raw


def decode_bcd_digits(raw: bytes, what: str) -> str:
    """Packed BCD, every nibble 0-9."""
    digits = raw.hex()
    if not digits.isdigit():
        raise _malformed(what, "not packed BCD")
    return digits


def decode_bcd_date(raw: bytes, what: str = "date") -> dt.date:
    """4 bytes of packed BCD yyyymmdd, a real calendar date."""
    if len(raw) != 4:
        raise _malformed(what, f"{len(raw)} bytes instead of 4")
    digits = decode_bcd_digits(raw, what)
    try:
        return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError as exc:
        raise _malformed(what, f"{digits} is not a calendar date") from exc


def decode_ascii(raw: bytes, what: str) -> str:
    """Printable ASCII; trailing spaces are padding. Empty after trimming is refused."""
    if any(not 0x20 <= b <= 0x7E for b in raw):
        raise _malformed(what, "not printable ASCII")
    text = raw.decode("ascii").rstrip(" ")
    if not text:
        raise _malformed(what, "empty")
    return text


def decode_card_sn(raw: bytes) -> str:
    """EF05/01: 16 bytes whose first three are the BCD region code."""
    if len(raw) != RECORD_BYTES[TAG_CARD_SN]:
        raise CardError(
            CardResult.card_id_format_error,
            f"card identification code has {len(raw)} bytes instead of 16",
        )
    text = raw.hex().upper()
    if not text[:6].isdigit():
        raise CardError(
            CardResult.card_id_format_error,
            "card identification code does not start with a six-digit region code",
        )
    return text


def decode_spec_version(raw: bytes) -> tuple[str, int]:
    """EF05/03 "d.dd" and the generation, its first digit (1, 2 or 3)."""
    text = decode_ascii(_exact(raw, TAG_SPEC_VERSION, "spec version"), "spec version")
    if len(text) != 4 or text[0] not in "123" or text[1] != "." or not text[2:].isdigit():
        raise _malformed("spec version", f"{text!r} is not 1.xx, 2.xx or 3.xx")
    return text, int(text[0])


def decode_card_no(raw: bytes) -> str:
    if not RECORD_BYTES[TAG_CARD_NO] <= len(raw) <= CARD_NO_RECORD_BYTES_MAX:
        raise _malformed("card number", f"{len(raw)} bytes")
    text = decode_ascii(raw[: RECORD_BYTES[TAG_CARD_NO]], "card number")
    if " " in text:
        raise _malformed("card number", "contains a space")
    return text


def decode_certno(raw: bytes) -> str:
    text = decode_ascii(_exact(raw, TAG_CERTNO, "social security number"), "certno")
    if len(text) != 18 or not text[:17].isdigit() or not (text[17].isdigit() or text[17] == "X"):
        raise _malformed("social security number", "not 17 digits and a digit or X")
    return text


def decode_name(name: bytes, extension: bytes | None) -> str:
    """EF06/09 ‖ EF06/4E (absent on first-generation cards), padding trimmed, GBK."""
    _exact(name, TAG_NAME, "name")
    if extension is not None:
        _exact(extension, TAG_NAME_EXT, "name extension")
    joined = name.rstrip(NAME_PADDING) + (extension or b"").rstrip(NAME_PADDING)
    try:
        text = joined.decode("gbk")
    except UnicodeDecodeError as exc:
        raise _malformed("name", "not GBK") from exc
    if not text:
        raise _malformed("name", "empty")
    if "|" in text or any(unicodedata.category(ch) == "Cc" for ch in text):
        raise _malformed("name", "contains a control character or '|'")
    return text


def decode_gender(raw: bytes) -> str:
    text = decode_ascii(_exact(raw, TAG_GENDER, "gender"), "gender")
    if text not in GENDERS:
        raise _malformed("gender", "not a GB/T 2261.1 code")
    return text


def _records(records: Mapping[int, bytes], tags: tuple[int, ...]) -> list[bytes]:
    missing = [f"{t:02X}" for t in tags if t not in records]
    if missing:
        raise _malformed("records", f"missing {', '.join(missing)}")
    return [records[t] for t in tags]


def decode_basics(atr: bytes, algorithm: CardAlgorithm, records: Mapping[int, bytes]) -> CardBasics:
    """CardBasics from the ATR, the FCI's algorithm and EF05's record values by tag."""
    atr_historical_bytes(atr)  # refuse a malformed ATR now, not when a report is made
    sn, card_type, version, org, issued, expiry, card_no = _records(records, EF05_TAGS)
    spec_version, generation = decode_spec_version(version)
    return CardBasics(
        atr=bytes(atr),
        card_sn=decode_card_sn(sn),
        card_type=decode_ascii(_exact(card_type, TAG_CARD_TYPE, "card type"), "card type"),
        spec_version=spec_version,
        generation=generation,
        algorithm=algorithm,
        init_org=decode_ascii(_exact(org, TAG_INIT_ORG, "init org"), "init org"),
        issue_date=decode_bcd_date(issued, "issue date"),
        expiry_date=decode_bcd_date(expiry, "expiry date"),
        card_no=decode_card_no(card_no),
    )


def decode_holder(records: Mapping[int, bytes]) -> CardHolder:
    """CardHolder from EF06's record values by tag; 4E may be absent."""
    certno, name, gender, nation, birthplace, birth = _records(records, EF06_TAGS[:-1])
    return CardHolder(
        certno=decode_certno(certno),
        name=decode_name(name, records.get(TAG_NAME_EXT)),
        gender=decode_gender(gender),
        nation=decode_bcd_digits(_exact(nation, TAG_NATION, "nation"), "nation"),
        birthplace=decode_bcd_digits(
            _exact(birthplace, TAG_BIRTHPLACE, "birth place"), "birth place"
        ),
        birth_date=decode_bcd_date(birth, "birth date"),
    )


def atr_historical_bytes(atr: bytes) -> bytes:
    """The historical bytes of an ATR (ISO/IEC 7816-3 §8.2), parsed strictly: TS 3B or
    3F, interface bytes as announced by T0/TDi, K historical bytes, and TCK exactly when
    a protocol other than T=0 is offered (then the XOR of T0..TCK must be 0)."""
    if not 2 <= len(atr) <= ATR_BYTES_MAX or atr[0] not in (0x3B, 0x3F):
        raise _malformed("ATR", "not an ISO 7816-3 answer to reset")
    count = atr[1] & 0x0F
    indicator = atr[1] >> 4
    pos = 2
    needs_tck = False
    while True:
        pos += bin(indicator & 0x07).count("1")  # TA, TB, TC
        if not indicator & 0x08:
            break
        if pos >= len(atr):
            raise _malformed("ATR", "truncated interface bytes")
        td = atr[pos]
        pos += 1
        needs_tck = needs_tck or td & 0x0F != 0
        indicator = td >> 4
    end = pos + count + (1 if needs_tck else 0)
    if end != len(atr):
        raise _malformed("ATR", f"{len(atr)} bytes where T0/TDi announce {end}")
    if needs_tck:
        check = 0
        for b in atr[1:]:
            check ^= b
        if check:
            raise _malformed("ATR", "TCK does not check")
    return bytes(atr[pos : pos + count])
