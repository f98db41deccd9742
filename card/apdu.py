"""ISO/IEC 7816-4 command and response APDUs: short and extended length, status words
with names.

A command is CLA INS P1 P2 [Lc data] [Le]; short form carries Lc/Le in one byte (data
up to 255 bytes, Le up to 256 with 00 meaning 256), extended form in two or three bytes
after a 00 marker (data up to 65 535 bytes, Le up to 65 536). `CommandApdu.encode()`
chooses the short form whenever it fits; `CommandApdu.decode()` accepts exactly the
four ISO cases in either form and refuses anything else with `ApduError` — it never
raises anything else, whatever the bytes (fuzzed in the tests).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

SHORT_DATA_MAX = 255
SHORT_LE_MAX = 256
EXTENDED_DATA_MAX = 65_535
EXTENDED_LE_MAX = 65_536


class ApduError(ValueError):
    """Bytes that are not a valid APDU, or fields out of range."""


class StatusWord(enum.IntEnum):
    """Status words the card flows act on (ISO 7816-4 §5.6 and DOMAIN.md §3.4)."""

    ok = 0x9000
    warning_eof = 0x6282
    wrong_length = 0x6700
    security_status_not_satisfied = 0x6982
    authentication_method_blocked = 0x6983
    reference_data_not_usable = 0x6984
    conditions_of_use_not_satisfied = 0x6985
    incorrect_sm_data_objects = 0x6988
    wrong_data = 0x6A80
    function_not_supported = 0x6A81
    file_not_found = 0x6A82
    record_not_found = 0x6A83
    incorrect_p1_p2 = 0x6A86
    referenced_data_not_found = 0x6A88
    wrong_p1_p2 = 0x6B00
    instruction_not_supported = 0x6D00
    class_not_supported = 0x6E00
    no_precise_diagnosis = 0x6F00
    application_permanently_locked = 0x9303


def status_name(sw: int) -> str:
    """A readable name for any status word, including the ranges with a counter."""
    if 0 <= sw <= 0xFFFF and sw in StatusWord._value2member_map_:
        return StatusWord(sw).name
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw1 == 0x61:
        return f"bytes_available_{sw2}"
    if sw1 == 0x6C:
        return f"wrong_le_exact_{sw2}"
    if sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        return f"verify_failed_{sw2 & 0x0F}_tries_left"
    return f"sw_{sw:04X}"


@dataclass(frozen=True)
class CommandApdu:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None  # None: no response data expected

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFF:
                raise ApduError(f"{name} must be one byte, got {value}")
        if len(self.data) > EXTENDED_DATA_MAX:
            raise ApduError(f"command data must be at most {EXTENDED_DATA_MAX} bytes")
        if self.le is not None and not 1 <= self.le <= EXTENDED_LE_MAX:
            raise ApduError(f"Le must be 1..{EXTENDED_LE_MAX}, got {self.le}")

    @property
    def extended(self) -> bool:
        return len(self.data) > SHORT_DATA_MAX or (self.le is not None and self.le > SHORT_LE_MAX)

    def encode(self) -> bytes:
        head = bytes((self.cla, self.ins, self.p1, self.p2))
        if not self.extended:
            body = bytes((len(self.data),)) + self.data if self.data else b""
            le = b"" if self.le is None else bytes((self.le % 256,))
            return head + body + le
        body = (b"\x00" + len(self.data).to_bytes(2, "big") + self.data) if self.data else b""
        if self.le is None:
            return head + body
        le2 = (self.le % 65_536).to_bytes(2, "big")
        return head + body + (le2 if self.data else b"\x00" + le2)

    @classmethod
    def decode(cls, raw: bytes) -> CommandApdu:
        if len(raw) < 4:
            raise ApduError(f"a command APDU has at least 4 bytes, got {len(raw)}")
        cla, ins, p1, p2 = raw[:4]
        rest = raw[4:]
        if not rest:  # case 1
            return cls(cla, ins, p1, p2)
        if len(rest) == 1:  # case 2 short
            return cls(cla, ins, p1, p2, le=rest[0] or 256)
        if rest[0] != 0:  # short case 3 or 4
            lc = rest[0]
            if len(rest) == 1 + lc:
                return cls(cla, ins, p1, p2, rest[1:])
            if len(rest) == 2 + lc:
                return cls(cla, ins, p1, p2, rest[1 : 1 + lc], rest[-1] or 256)
            raise ApduError(f"Lc {lc} does not match the {len(rest) - 1} bytes that follow")
        # Extended length: 00 marker.
        if len(rest) == 3:  # case 2 extended
            return cls(cla, ins, p1, p2, le=int.from_bytes(rest[1:3], "big") or 65_536)
        if len(rest) < 3:
            raise ApduError("truncated extended length field")
        lc = int.from_bytes(rest[1:3], "big")
        if lc == 0:
            raise ApduError("extended Lc of 0 is not allowed")
        if len(rest) == 3 + lc:
            return cls(cla, ins, p1, p2, rest[3:])
        if len(rest) == 5 + lc:
            le = int.from_bytes(rest[-2:], "big") or 65_536
            return cls(cla, ins, p1, p2, rest[3 : 3 + lc], le)
        raise ApduError(f"extended Lc {lc} does not match the {len(rest) - 3} bytes that follow")


@dataclass(frozen=True)
class ResponseApdu:
    data: bytes
    sw: int

    @property
    def ok(self) -> bool:
        return self.sw == StatusWord.ok

    @property
    def status(self) -> str:
        return status_name(self.sw)

    def encode(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")

    @classmethod
    def decode(cls, raw: bytes) -> ResponseApdu:
        if len(raw) < 2:
            raise ApduError(f"a response APDU has at least 2 bytes (SW1 SW2), got {len(raw)}")
        if len(raw) > EXTENDED_LE_MAX + 2:
            raise ApduError("response data longer than 65 536 bytes")
        return cls(raw[:-2], int.from_bytes(raw[-2:], "big"))
