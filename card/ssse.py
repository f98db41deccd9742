"""Terminal side of the social security application (SSSE, DOMAIN.md §3.2–§3.4): a
`CardSession` over one `card.reader.Reader`, and the iReadCardBas report line.

A session is one power-on of one card: `open()` connects, selects SSSE (whose FCI
names the key algorithm) and reads EF05; then challenges, INTERNAL / EXTERNAL
AUTHENTICATE, EF06 and the PIN commands; `close()` powers the card off. It is
synchronous because PC/SC is (the card agent runs it on the reader's own thread).

Invariants:
- the state (`SessionState`) only moves forward: idle → open → closed, or → lost when
  the reader lost the card (removed, timeout, reader gone; the power-on state is gone
  with it) and then closed. An operation in the wrong state raises `SessionStateError`
  before any byte is sent;
- every public operation runs under one budget of `deadline_s` seconds shared by all
  its APDUs (including GET RESPONSE rounds), and every reader call gets what is left;
- every failure is a `CardError` with a `CardResult` (reader failures chained with
  `raise ... from`), and card data is decoded strictly (`card.ssse_records`);
- 61xx (more data: GET RESPONSE) and 6Cxx (wrong Le: re-send with the exact one) are
  handled in one place, `transceive`, with bounded rounds.

Algorithm identifiers in the FCI's 9F0C (86 01 XX): the standard's table is not public
(DOMAIN.md §3.2), so the values are our assignment, shared with the virtual card:
`ALGORITHM_ID_TDES` = 01 (generation 2; also what an absent 9F0C means, as observed)
and `ALGORITHM_ID_SM4` = 04 (generation 3). Any other value is `unsupported_algorithm`.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from types import TracebackType

from card import tlv
from card.apdu import CommandApdu, ResponseApdu, StatusWord
from card.reader import Reader, ReaderError
from card.results import (
    CardError,
    CardResult,
    SessionStateError,
    reader_failure,
    status_error,
)
from card.ssse_records import (
    EF05_TAGS,
    EF06_TAGS,
    RECORD_BYTES,
    TAG_NAME_EXT,
    CardAlgorithm,
    CardBasics,
    CardHolder,
    decode_basics,
    decode_holder,
    decode_record,
)

__all__ = [
    "ALGORITHM_ID_SM4",
    "ALGORITHM_ID_TDES",
    "SSSE_AID",
    "CardAlgorithm",
    "CardBasics",
    "CardError",
    "CardHolder",
    "CardResult",
    "CardSession",
    "SessionState",
    "SessionStateError",
    "decode_fci",
    "read_card_bas_line",
    "transceive",
]

SSSE_AID = bytes.fromhex("7378312E73682EC9E7BBE1B1A3D5CF")  # "sx1.sh." + GBK "社会保障"
EF05_FID = bytes.fromhex("EF05")
EF06_FID = bytes.fromhex("EF06")
ALGORITHM_ID_TDES = 0x01  # our assignment, see the module docstring
ALGORITHM_ID_SM4 = 0x04  # our assignment, see the module docstring
ALGORITHMS = {ALGORITHM_ID_TDES: CardAlgorithm.TDES, ALGORITHM_ID_SM4: CardAlgorithm.SM4}
RKSSSE_KEY_ID = 0x0A  # P2 of EXTERNAL AUTHENTICATE (DOMAIN.md §3.3)
CHALLENGE_BYTES = 8
PROCESS_FACTOR_BYTES = 8
CRYPTOGRAM_BYTES = 8
PIN_DIGITS_MIN, PIN_DIGITS_MAX = 4, 16
PIN_SEPARATOR = b"\xff"  # between old and new PIN in CHANGE PIN
GET_RESPONSE_ROUNDS_MAX = 8  # 8 × 256 bytes, far above any SSSE answer

_READER_RESULTS = frozenset(
    {
        CardResult.no_card,
        CardResult.card_removed,
        CardResult.reader_timeout,
        CardResult.reader_error,
    }
)
_EXTERNAL_AUTH_RESULTS = {
    0: CardResult.external_auth_failed_0_left,
    1: CardResult.external_auth_failed_1_left,
}


class SessionState(enum.Enum):
    idle = "idle"  # created; the card is not powered
    open = "open"  # SSSE selected, EF05 read
    lost = "lost"  # the reader lost the card; only close() is left
    closed = "closed"


def _transmit(reader: Reader, command: CommandApdu, end: float) -> ResponseApdu:
    remaining = end - time.monotonic()
    if remaining <= 0:
        raise CardError(CardResult.reader_timeout, "the operation's deadline passed")
    try:
        return reader.transmit(command, deadline_s=remaining)
    except ReaderError as exc:
        raise reader_failure(exc) from exc


def transceive(reader: Reader, command: CommandApdu, *, deadline_s: float) -> ResponseApdu:
    """Send `command`; re-send once with the exact Le on 6Cxx; collect 61xx data with
    GET RESPONSE (bounded). The answer is the whole data with the final status word."""
    return _transceive(reader, command, time.monotonic() + deadline_s)


def _transceive(reader: Reader, command: CommandApdu, end: float) -> ResponseApdu:
    response = _transmit(reader, command, end)
    if response.sw >> 8 == 0x6C:
        exact = (response.sw & 0xFF) or 256
        response = _transmit(reader, dataclasses.replace(command, le=exact), end)
    data = b""
    for _ in range(GET_RESPONSE_ROUNDS_MAX):
        if response.sw >> 8 != 0x61:
            return ResponseApdu(data + response.data, response.sw)
        data += response.data
        get_response = CommandApdu(0x00, 0xC0, 0x00, 0x00, le=(response.sw & 0xFF) or 256)
        response = _transmit(reader, get_response, end)
    raise CardError(
        CardResult.unexpected_status,
        f"the card still had data after {GET_RESPONSE_ROUNDS_MAX} GET RESPONSE rounds",
        sw=response.sw,
    )


def decode_fci(fci: bytes) -> CardAlgorithm:
    """The key algorithm from the SSSE FCI 6F{84 AID, A5{9F0C 03 86 01 XX}}; a FCI
    naming another DF is `wrong_card_type`."""
    try:
        objects = tlv.parse(fci)
    except tlv.TlvError as exc:
        raise CardError(CardResult.card_data_malformed, f"SSSE FCI: {exc}") from exc
    if len(objects) != 1 or objects[0].tag != 0x6F:
        raise CardError(CardResult.card_data_malformed, "SSSE FCI: not one 6F template")
    name = objects[0].find(0x84)
    if name is None or name.value != SSSE_AID:
        raise CardError(CardResult.wrong_card_type, "the FCI names another application")
    algorithm = objects[0].find(0x9F0C)
    if algorithm is None:
        return CardAlgorithm.TDES
    if len(algorithm.value) != 3 or algorithm.value[:2] != b"\x86\x01":
        raise CardError(CardResult.card_data_malformed, "SSSE FCI: 9F0C is not 86 01 XX")
    found = ALGORITHMS.get(algorithm.value[2])
    if found is None:
        raise CardError(
            CardResult.unsupported_algorithm,
            f"algorithm identifier {algorithm.value[2]:02X} is neither 3DES nor SM4",
        )
    return found


def pin_bcd(pin: str) -> bytes:
    """4..16 ASCII digits as packed BCD, F-padded when odd (DOMAIN.md §3.4)."""
    if not (pin.isascii() and pin.isdigit()):
        raise CardError(CardResult.illegal_input, "a PIN is made of digits only")
    if not PIN_DIGITS_MIN <= len(pin) <= PIN_DIGITS_MAX:
        raise CardError(
            CardResult.pin_length_error,
            f"a PIN has {PIN_DIGITS_MIN}..{PIN_DIGITS_MAX} digits, got {len(pin)}",
        )
    return bytes.fromhex(pin + "F" * (len(pin) % 2))


def _pin_outcome(sw: int, what: str) -> None:
    if sw == StatusWord.ok:
        return
    if sw >> 4 == 0x63C and sw & 0x0F:
        left = sw & 0x0F
        raise CardError(
            CardResult.pin_verify_failed, f"{what}: wrong PIN, {left} left", sw=sw, tries_left=left
        )
    if sw in (0x63C0, StatusWord.authentication_method_blocked):
        raise CardError(CardResult.pin_locked, f"{what}: the PIN is blocked", sw=sw, tries_left=0)
    raise status_error(sw, what)


def _check_bytes(value: bytes, length: int, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != length:
        raise CardError(CardResult.illegal_input, f"{what} must be {length} bytes")
    return bytes(value)


class CardSession:
    """One power-on session with the SSSE application; see the module docstring."""

    def __init__(self, reader: Reader, *, deadline_s: float = 2.0) -> None:
        self._reader = reader
        self._deadline_s = deadline_s
        self._state = SessionState.idle
        self.basics: CardBasics | None = None  # set by open()

    @property
    def state(self) -> SessionState:
        return self._state

    def __enter__(self) -> CardSession:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _require(self, state: SessionState, operation: str) -> float:
        if self._state is not state:
            raise SessionStateError(
                f"cannot {operation}: the session is {self._state.value}, needs {state.value}"
            )
        return time.monotonic() + self._deadline_s

    def _exchange(self, command: CommandApdu, end: float) -> ResponseApdu:
        try:
            return _transceive(self._reader, command, end)
        except CardError as exc:
            if exc.result in _READER_RESULTS:
                self._state = SessionState.lost
                self._reader.disconnect()
            raise

    def _select_file(self, fid: bytes, end: float) -> None:
        answer = self._exchange(CommandApdu(0x00, 0xA4, 0x02, 0x00, fid), end)
        if not answer.ok:
            raise status_error(answer.sw, f"SELECT {fid.hex().upper()}")

    def _read_records(self, tags: tuple[int, ...], end: float) -> dict[int, bytes]:
        """READ RECORD by identifier in the current EF; Le from DOMAIN.md's table (a
        card with another length answers 6Cxx and `transceive` asks again). 4E may be
        missing (first-generation cards)."""
        out: dict[int, bytes] = {}
        for tag in tags:
            command = CommandApdu(0x00, 0xB2, tag, 0x00, le=2 + RECORD_BYTES[tag])
            answer = self._exchange(command, end)
            if answer.sw == StatusWord.record_not_found and tag == TAG_NAME_EXT:
                continue
            if not answer.ok:
                raise status_error(answer.sw, f"READ RECORD {tag:02X}")
            out[tag] = decode_record(answer.data, tag)
        return out

    def open(self) -> CardBasics:
        """Power on, SELECT SSSE (FCI → algorithm), SELECT EF05, read records 01..07.
        On failure the card is powered off and the session closed."""
        end = self._require(SessionState.idle, "open")
        try:
            try:
                atr = self._reader.connect(deadline_s=end - time.monotonic())
            except ReaderError as exc:
                raise reader_failure(exc) from exc
            select = CommandApdu(0x00, 0xA4, 0x04, 0x00, SSSE_AID, le=256)
            fci = self._exchange(select, end)
            if fci.sw == StatusWord.application_permanently_locked:
                raise status_error(fci.sw, "SELECT SSSE")
            if not fci.ok:
                raise CardError(
                    CardResult.wrong_card_type,
                    f"no social security application: SELECT SSSE answered {fci.status}",
                    sw=fci.sw,
                )
            algorithm = decode_fci(fci.data)
            self._select_file(EF05_FID, end)
            basics = decode_basics(atr, algorithm, self._read_records(EF05_TAGS, end))
        except CardError:
            self._reader.disconnect()
            self._state = SessionState.closed
            raise
        self.basics = basics
        self._state = SessionState.open
        return basics

    def get_challenge(self) -> bytes:
        """GET CHALLENGE: 8 random bytes; the card keeps the last one for EXTERNAL
        AUTHENTICATE."""
        end = self._require(SessionState.open, "get a challenge")
        answer = self._exchange(CommandApdu(0x00, 0x84, 0x00, 0x00, le=CHALLENGE_BYTES), end)
        if not answer.ok:
            raise status_error(answer.sw, "GET CHALLENGE")
        if len(answer.data) != CHALLENGE_BYTES:
            raise CardError(
                CardResult.card_data_malformed, f"GET CHALLENGE gave {len(answer.data)} bytes"
            )
        return answer.data

    def internal_authenticate(self, process_factor: bytes, challenge: bytes) -> bytes:
        """INTERNAL AUTHENTICATE over process factor ‖ challenge: the card's 8-byte
        cryptogram, for the engine's HSM to verify (the terminal holds no key)."""
        end = self._require(SessionState.open, "authenticate the card")
        data = _check_bytes(process_factor, PROCESS_FACTOR_BYTES, "process factor")
        data += _check_bytes(challenge, CHALLENGE_BYTES, "challenge")
        command = CommandApdu(0x00, 0x88, 0x00, 0x00, data, le=CRYPTOGRAM_BYTES)
        answer = self._exchange(command, end)
        if not answer.ok:
            raise CardError(
                CardResult.internal_auth_failed,
                f"INTERNAL AUTHENTICATE refused: {answer.status}",
                sw=answer.sw,
            )
        if len(answer.data) != CRYPTOGRAM_BYTES:
            raise CardError(
                CardResult.internal_auth_failed,
                f"INTERNAL AUTHENTICATE gave {len(answer.data)} bytes instead of 8",
            )
        return answer.data

    def external_authenticate(self, process_factor: bytes, cryptogram: bytes) -> None:
        """EXTERNAL AUTHENTICATE with key RKSSSE over the card's last challenge; on
        generation 3 this unlocks EF06."""
        end = self._require(SessionState.open, "authenticate to the card")
        data = _check_bytes(process_factor, PROCESS_FACTOR_BYTES, "process factor")
        data += _check_bytes(cryptogram, CRYPTOGRAM_BYTES, "cryptogram")
        answer = self._exchange(CommandApdu(0x00, 0x82, 0x00, RKSSSE_KEY_ID, data), end)
        sw = answer.sw
        if sw == StatusWord.ok:
            return
        if sw >> 4 == 0x63C or sw == StatusWord.authentication_method_blocked:
            left = sw & 0x0F if sw >> 4 == 0x63C else 0
            result = _EXTERNAL_AUTH_RESULTS.get(left, CardResult.external_auth_failed_2_left)
            raise CardError(
                result, f"EXTERNAL AUTHENTICATE failed, {left} left", sw=sw, tries_left=left
            )
        raise status_error(sw, "EXTERNAL AUTHENTICATE")

    def read_holder(self) -> CardHolder:
        """SELECT EF06, read 08..0D and 4E. Generation 3 answers 6982 (CardError
        `security_status_not_satisfied`) until EXTERNAL AUTHENTICATE succeeded."""
        end = self._require(SessionState.open, "read the card holder")
        self._select_file(EF06_FID, end)
        return decode_holder(self._read_records(EF06_TAGS, end))

    def verify_pin(self, pin: str) -> None:
        """VERIFY; wrong → `pin_verify_failed` with `tries_left`, blocked → `pin_locked`."""
        end = self._require(SessionState.open, "verify the PIN")
        data = pin_bcd(pin)
        answer = self._exchange(CommandApdu(0x00, 0x20, 0x00, 0x00, data), end)
        _pin_outcome(answer.sw, "VERIFY")

    def change_pin(self, old: str, new: str) -> None:
        """CHANGE PIN (80 5E 01 00 old FF new); the old PIN is checked like VERIFY."""
        end = self._require(SessionState.open, "change the PIN")
        data = pin_bcd(old) + PIN_SEPARATOR + pin_bcd(new)
        answer = self._exchange(CommandApdu(0x80, 0x5E, 0x01, 0x00, data), end)
        _pin_outcome(answer.sw, "CHANGE PIN")

    def pin_tries_left(self) -> int:
        """VERIFY without data: the card answers 63Cx (x tries left) or 6983 (blocked)."""
        end = self._require(SessionState.open, "query the PIN try counter")
        sw = self._exchange(CommandApdu(0x00, 0x20, 0x00, 0x00), end).sw
        if sw >> 4 == 0x63C:
            return sw & 0x0F
        if sw == StatusWord.authentication_method_blocked:
            return 0
        raise status_error(sw, "VERIFY (try counter)")

    def close(self) -> None:
        """Power the card off; harmless in any state and when called twice."""
        if self._state is not SessionState.closed:
            self._reader.disconnect()
            self._state = SessionState.closed


def read_card_bas_line(
    basics: CardBasics, holder: CardHolder, terminal_no: str, device_no: str
) -> str:
    """The 11-field, '|'-terminated iReadCardBas line (DOMAIN.md §3.2): region, social
    security number, card number, card identification code, name, ATR historical
    bytes (hex), spec version, issue date, expiry date (yyyymmdd), terminal number,
    terminal device number."""
    fields = (
        basics.region,
        holder.certno,
        basics.card_no,
        basics.card_sn,
        holder.name,
        basics.historical_bytes.hex().upper(),
        basics.spec_version,
        f"{basics.issue_date:%Y%m%d}",
        f"{basics.expiry_date:%Y%m%d}",
        terminal_no,
        device_no,
    )
    for name, value in (("terminal number", terminal_no), ("device number", device_no)):
        if "|" in value or any(not ch.isprintable() for ch in value):
            raise CardError(CardResult.illegal_input, f"{name} contains '|' or a control character")
    return "".join(f"{value}|" for value in fields)
