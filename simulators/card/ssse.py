"""The social security application (SSSE) of the virtual card: EF05 and EF06 with the
records of DOMAIN.md §3.2, GET CHALLENGE, INTERNAL / EXTERNAL AUTHENTICATE with the
card's diversified keys (hsm.cardauth), VERIFY and CHANGE PIN.

Choices the sources leave open, made here and relied on by `card.ssse`:
- FCI 6F{84 AID, A5{9F0C 03 86 01 XX}}, XX = card.ssse.ALGORITHM_ID_TDES (generation 2)
  or ALGORITHM_ID_SM4 (generation 3); SELECT EF (00 A4 00|02 00|0C 02 EF0x) answers
  9000 without FCP.
- Record numbers (READ RECORD P2 = SFI<<3 | 4) are positions in the file: EF05's
  records 1..7 are tags 01..07, EF06's are 08, 09, 0A, 0B, 0C, 0D, 4E. P2 = 00 reads
  by record identifier (= tag) in the current EF; SFI 5 = EF05, 6 = EF06, and reading
  by SFI makes that EF current.
- Le: the exact length, or 00 (short) / 0000 (extended) meaning "all there is", gives
  the data and 9000; any other Le gives 6Cxx with the exact length and changes
  nothing; no Le on a command that answers data gives 61xx, the data then waits for
  GET RESPONSE (00 C0 00 00 xx) until the next other command (T=0 behaviour).
- Name (09) 30 bytes GBK padded with 00, the rest of a long name in 4E (20 bytes,
  present on every card, all 00 when unused); a name never splits a character.
- Nation (0B) is 01 (汉族, BCD of the GB/T 3304 code): the population has no
  ethnicity. Birth place (0C) is the BCD of the ID number's first six digits.
- Try counters (PIN and the RKSSSE external-authentication key) start at 3, survive
  power-on, count down on each wrong value (63Cx), block at 0 (6983) and reset to 3
  on a right one. VERIFY without data answers 63Cx, or 6983 once blocked. The PIN of
  CHANGE PIN lives in this object (the card's EEPROM).
- A malformed PIN block (not 4..16 BCD digits, F-padded when odd) is 6A80 and costs
  no try. UNBLOCK (84 24) and RELOAD are not implemented (6D00).

Modes (simulators.card.app.CardMode): clone cards get wrong keys from the factory and
behave genuinely otherwise; expired writes 2024-mm-dd minus one day (mm-dd of the
issue date) as EF05/06, in the past whatever today is and the same on every run;
pin_blocked starts with the PIN try counter at 0.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from collections.abc import Callable

from card import tlv
from card.apdu import CommandApdu, ResponseApdu, StatusWord
from card.ssse import ALGORITHM_ID_SM4, ALGORITHM_ID_TDES, RKSSSE_KEY_ID, SSSE_AID
from hsm.cardauth import external_auth_cryptogram, internal_auth_cryptogram
from simulators.card.app import CardMode
from simulators.card.keys import CardKeys
from simulators.population import Card, Person

EF05 = bytes.fromhex("EF05")
EF06 = bytes.fromhex("EF06")
SFI_FILES = {5: EF05, 6: EF06}
TRIES_MAX = 3
NAME_BYTES, NAME_EXT_BYTES = 30, 20
NATION_HAN = b"\x01"
CHALLENGE_BYTES = 8
SW_COMMAND_NOT_ALLOWED_NO_EF = 0x6986


def _sw(sw: int, data: bytes = b"") -> ResponseApdu:
    return ResponseApdu(data, sw)


def _bcd_date(day: dt.date) -> bytes:
    return bytes.fromhex(f"{day:%Y%m%d}")


def _ascii(text: str, length: int, what: str) -> bytes:
    raw = text.encode("ascii")
    if len(raw) != length:
        raise ValueError(f"{what} must be {length} ASCII characters, got {len(raw)}")
    return raw


def split_name(name: str) -> tuple[bytes, bytes]:
    """GBK name into record 09 (30 bytes) and extension 4E (20 bytes), 00-padded, with
    whole characters in each part."""
    head, tail = b"", b""
    for ch in name:
        code = ch.encode("gbk")
        if not tail and len(head) + len(code) <= NAME_BYTES:
            head += code
        else:
            tail += code
    if len(tail) > NAME_EXT_BYTES:
        raise ValueError(f"name longer than {NAME_BYTES + NAME_EXT_BYTES} GBK bytes")
    return head.ljust(NAME_BYTES, b"\x00"), tail.ljust(NAME_EXT_BYTES, b"\x00")


def _file(records: list[tuple[int, bytes]]) -> tuple[tuple[int, bytes], ...]:
    """(tag, record bytes) in record-number order; a record is tag ‖ length ‖ value."""
    return tuple((tag, bytes((tag, len(value))) + value) for tag, value in records)


def _pin_digits(block: bytes) -> str | None:
    digits = block.hex().upper()
    if digits.endswith("F"):
        digits = digits[:-1]
    if not (digits.isdigit() and 4 <= len(digits) <= 16):
        return None
    return digits


class SsseApplication:
    """One card's SSSE application; see the module docstring."""

    def __init__(
        self,
        card: Card,
        person: Person,
        keys: CardKeys,
        mode: CardMode,
        *,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._keys = keys
        self._generation = card.generation
        self._random_bytes = random_bytes
        self._algorithm_id = ALGORITHM_ID_SM4 if card.generation == 3 else ALGORITHM_ID_TDES
        expiry = card.expiry_date
        if mode is CardMode.expired:
            expiry = dt.date(2024, card.issue_date.month, card.issue_date.day)
            expiry -= dt.timedelta(days=1)
        card_sn = bytes.fromhex(card.card_sn)
        if len(card_sn) != 16:
            raise ValueError("card_sn must be 32 hex digits")
        name, name_ext = split_name(person.psn_name)
        certno = _ascii(person.certno, 18, "certno")
        if not person.certno[:6].isdigit():
            raise ValueError("certno must start with a six-digit region code")
        self._files = {
            EF05: _file(
                [
                    (0x01, card_sn),
                    (0x02, _ascii(card.card_type, 1, "card type")),
                    (0x03, _ascii(f"{card.generation}.00", 4, "spec version")),
                    (0x04, _ascii(card.init_org, 12, "init org")),
                    (0x05, _bcd_date(card.issue_date)),
                    (0x06, _bcd_date(expiry)),
                    (0x07, _ascii(card.card_no, 9, "card number")),
                ]
            ),
            EF06: _file(
                [
                    (0x08, certno),
                    (0x09, name),
                    (0x0A, _ascii(person.gend, 1, "gender")),
                    (0x0B, NATION_HAN),
                    (0x0C, bytes.fromhex(person.certno[:6])),
                    (0x0D, _bcd_date(person.brdy)),
                    (0x4E, name_ext),
                ]
            ),
        }
        # Persistent (EEPROM) state.
        self._pin = card.pin
        self._pin_tries = 0 if mode is CardMode.pin_blocked else TRIES_MAX
        self._ext_tries = TRIES_MAX
        # Session state, cleared by reset().
        self._current: bytes | None = None
        self._challenge: bytes | None = None
        self._ext_authenticated = False
        self._pin_verified = False
        self._pending = b""
        self._handlers: dict[int, tuple[int, Callable[[CommandApdu], ResponseApdu]]] = {
            0xA4: (0x00, self._select_file),
            0xB2: (0x00, self._read_record),
            0x84: (0x00, self._get_challenge),
            0x88: (0x00, self._internal_authenticate),
            0x82: (0x00, self._external_authenticate),
            0x20: (0x00, self._verify),
            0x5E: (0x80, self._change_pin),
            0xC0: (0x00, self._get_response),
        }

    def __repr__(self) -> str:
        return f"SsseApplication(gen={self._generation}, <keys and PIN hidden>)"

    @property
    def aids(self) -> tuple[bytes, ...]:
        return (SSSE_AID,)

    @property
    def pin_verified(self) -> bool:
        """Whether VERIFY succeeded in this power-on session (for tests and traces)."""
        return self._pin_verified

    def select(self, aid: bytes) -> ResponseApdu:
        self._current = None
        self._pending = b""
        algorithm = tlv.Tlv(0x9F0C, bytes((0x86, 0x01, self._algorithm_id)))
        fci = tlv.Tlv(
            0x6F, children=(tlv.Tlv(0x84, SSSE_AID), tlv.Tlv(0xA5, children=(algorithm,)))
        )
        return _sw(StatusWord.ok, tlv.encode(fci))

    def reset(self) -> None:
        self._current = None
        self._challenge = None
        self._ext_authenticated = False
        self._pin_verified = False
        self._pending = b""

    def process(self, command: CommandApdu) -> ResponseApdu:
        found = self._handlers.get(command.ins)
        if found is None:
            return _sw(StatusWord.instruction_not_supported)
        cla, handler = found
        if command.cla != cla:
            return _sw(StatusWord.class_not_supported)
        if command.ins != 0xC0:
            self._pending = b""
        return handler(command)

    # -- answers with data ---------------------------------------------------------

    @staticmethod
    def _le_refusal(le: int | None, length: int) -> ResponseApdu | None:
        """6Cxx when Le is neither exact nor "all there is"; None when data may go."""
        if le is None or le == length or le in (256, 65_536):
            return None
        return _sw(0x6C00 | length)

    def _answer(self, data: bytes, le: int | None) -> ResponseApdu:
        if le is None:
            self._pending = data
            return _sw(0x6100 | (len(data) & 0xFF))
        return _sw(StatusWord.ok, data)

    def _get_response(self, command: CommandApdu) -> ResponseApdu:
        if (command.p1, command.p2) != (0, 0):
            return _sw(StatusWord.incorrect_p1_p2)
        if not self._pending:
            return _sw(StatusWord.conditions_of_use_not_satisfied)
        if command.le is None or command.data:
            return _sw(StatusWord.wrong_length)
        refused = self._le_refusal(command.le, len(self._pending))
        if refused is not None:
            return refused
        data, self._pending = self._pending, b""
        return _sw(StatusWord.ok, data)

    # -- files ---------------------------------------------------------------------

    def _select_file(self, command: CommandApdu) -> ResponseApdu:
        if command.p1 not in (0x00, 0x02) or command.p2 not in (0x00, 0x0C):
            return _sw(StatusWord.incorrect_p1_p2)
        if len(command.data) != 2:
            return _sw(StatusWord.wrong_length)
        if command.data not in self._files:
            return _sw(StatusWord.file_not_found)
        self._current = command.data
        return _sw(StatusWord.ok)

    def _read_record(self, command: CommandApdu) -> ResponseApdu:
        sfi, how = command.p2 >> 3, command.p2 & 0x07
        if how not in (0, 4) or sfi == 31 or (how == 4 and command.p1 == 0) or command.data:
            return _sw(StatusWord.incorrect_p1_p2)
        if sfi:
            if sfi not in SFI_FILES:
                return _sw(StatusWord.file_not_found)
            self._current = SFI_FILES[sfi]
        if self._current is None:
            return _sw(SW_COMMAND_NOT_ALLOWED_NO_EF)
        if self._current == EF06 and self._generation >= 3 and not self._ext_authenticated:
            return _sw(StatusWord.security_status_not_satisfied)  # RKSSSE rule
        records = self._files[self._current]
        if how == 4:
            record = records[command.p1 - 1][1] if command.p1 <= len(records) else None
        else:
            record = next((raw for tag, raw in records if tag == command.p1), None)
        if record is None:
            return _sw(StatusWord.record_not_found)
        refused = self._le_refusal(command.le, len(record))
        if refused is not None:
            return refused
        return self._answer(record, command.le)

    # -- authentication ------------------------------------------------------------

    def _get_challenge(self, command: CommandApdu) -> ResponseApdu:
        if (command.p1, command.p2) != (0, 0):
            return _sw(StatusWord.incorrect_p1_p2)
        if command.data:
            return _sw(StatusWord.wrong_length)
        refused = self._le_refusal(command.le, CHALLENGE_BYTES)
        if refused is not None:
            return refused
        self._challenge = self._random_bytes(CHALLENGE_BYTES)
        return self._answer(self._challenge, command.le)

    def _internal_authenticate(self, command: CommandApdu) -> ResponseApdu:
        if (command.p1, command.p2) != (0, 0):
            return _sw(StatusWord.incorrect_p1_p2)
        if len(command.data) != 16:
            return _sw(StatusWord.wrong_length)
        refused = self._le_refusal(command.le, 8)
        if refused is not None:
            return refused
        factor, challenge = command.data[:8], command.data[8:]
        cryptogram = internal_auth_cryptogram(self._keys.internal_auth, factor, challenge)
        return self._answer(cryptogram, command.le)

    def _external_authenticate(self, command: CommandApdu) -> ResponseApdu:
        if (command.p1, command.p2) != (0x00, RKSSSE_KEY_ID):
            return _sw(StatusWord.incorrect_p1_p2)
        challenge, self._challenge = self._challenge, None  # single use, whatever follows
        if self._ext_tries == 0:
            return _sw(StatusWord.authentication_method_blocked)
        if len(command.data) != 16:
            return _sw(StatusWord.wrong_length)
        if challenge is None:
            return _sw(StatusWord.conditions_of_use_not_satisfied)
        factor, presented = command.data[:8], command.data[8:]
        expected = external_auth_cryptogram(self._keys.external_auth, factor, challenge)
        if not hmac.compare_digest(expected, presented):
            self._ext_tries -= 1
            self._ext_authenticated = False
            return _sw(0x63C0 | self._ext_tries)
        self._ext_tries = TRIES_MAX
        self._ext_authenticated = True
        return _sw(StatusWord.ok)

    # -- PIN -----------------------------------------------------------------------

    def _check_pin(self, presented: str) -> ResponseApdu:
        if hmac.compare_digest(presented.encode(), self._pin.encode()):
            self._pin_tries = TRIES_MAX
            self._pin_verified = True
            return _sw(StatusWord.ok)
        self._pin_tries -= 1
        self._pin_verified = False
        return _sw(0x63C0 | self._pin_tries)

    def _verify(self, command: CommandApdu) -> ResponseApdu:
        if (command.p1, command.p2) != (0, 0):
            return _sw(StatusWord.incorrect_p1_p2)
        if self._pin_tries == 0:
            return _sw(StatusWord.authentication_method_blocked)
        if not command.data:  # ISO 7816-4: VERIFY without data asks for the counter
            return _sw(0x63C0 | self._pin_tries)
        presented = _pin_digits(command.data)
        if presented is None:
            return _sw(StatusWord.wrong_data)
        return self._check_pin(presented)

    def _change_pin(self, command: CommandApdu) -> ResponseApdu:
        if (command.p1, command.p2) != (0x01, 0x00):
            return _sw(StatusWord.incorrect_p1_p2)
        if self._pin_tries == 0:
            return _sw(StatusWord.authentication_method_blocked)
        old_block, separator, new_block = command.data.partition(b"\xff")
        old, new = _pin_digits(old_block), _pin_digits(new_block)
        if not separator or old is None or new is None:
            return _sw(StatusWord.wrong_data)
        checked = self._check_pin(old)
        if checked.ok:
            self._pin = new
        return checked
