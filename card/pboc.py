"""The terminal side of the financial application (PBOC debit, DOMAIN.md §3.5): select
the application, initiate it, read the card's data and ask for the application
cryptograms of an online transaction, through one `Reader`.

    session = FinancialSession(reader)           # reader already connected
    session.select_ppse()                         # optional: the payment directory
    session.select(UNIONPAY_DEBIT_AID)
    session.get_processing_options()
    record = session.read_records()               # PAN, PSN, expiry
    arqc = session.generate_ac(txn)               # -> the issuer: arqc.mac_data, arqc.ac
    approved = session.complete(arc, arpc)        # second GENERATE AC: TC or AAC

The terminal is online-only: the first GENERATE AC always asks for an ARQC, and
offline data authentication, CVM processing and terminal action analysis are left
out (this card offers no offline authentication; its PIN is the social security
application's). The PDOL and CDOLs are filled from the transaction data; tags this
terminal does not know are zero-filled, as EMV Book 3 §5.4 allows.

Invariants:
- the session has a state (`SessionState`); a call in the wrong state raises
  `WrongSessionState` and sends nothing;
- a failure is a `FinancialCardError` (reader errors chained); a card's refusal or
  nonsense after selection leaves the session `failed` (select again to restart), a
  reader error leaves it `broken` (the card session is gone);
- every command goes out with what remains of the call's `deadline_s`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import msgspec

from card.apdu import CommandApdu, ResponseApdu, StatusWord
from card.emv_data import (
    AC_BYTES,
    PPSE_NAME,
    UNIONPAY_DEBIT_AID,
    CryptogramType,
    FinancialCardError,
    FinancialResult,
    Tag,
    ac_mac_data,
    bcd,
    build_dol,
    date_bcd,
    parse_dol,
)
from card.emv_parse import (
    AcResponse,
    AppEntry,
    AppSelection,
    FinancialRecord,
    ProcessingOptions,
    afl_records,
    collect_record_objects,
    financial_record,
    parse_app_fci,
    parse_directory,
    parse_generate_ac,
    parse_gpo,
    parse_record,
)
from card.reader import Reader, ReaderError
from card.tlv import Tlv, encode

__all__ = [
    "UNIONPAY_DEBIT_AID",
    "AppEntry",
    "AppSelection",
    "ApplicationCryptogram",
    "CryptogramType",
    "FinancialCardError",
    "FinancialRecord",
    "FinancialResult",
    "FinancialSession",
    "ProcessingOptions",
    "SessionState",
    "TransactionData",
    "WrongSessionState",
    "financial_record",
]

ARC_APPROVED = b"00"  # authorisation response code "00": approved
ARC_BYTES = 2
TERMINAL_COUNTRY = "156"
TERMINAL_CURRENCY = "156"
AMOUNT_FEN_MAX = 999_999_999_999  # n12
_T = TypeVar("_T")


class SessionState(enum.StrEnum):
    idle = "idle"
    directory_read = "directory-read"
    selected = "selected"
    initiated = "initiated"  # GET PROCESSING OPTIONS done
    records_read = "records-read"
    online_pending = "online-pending"  # ARQC given out, waiting for the issuer's answer
    completed = "completed"
    failed = "failed"  # the card refused or answered nonsense: select again
    broken = "broken"  # the reader failed: connect again and start a new session


class WrongSessionState(Exception):
    """A call out of order (e.g. GENERATE AC before the records were read)."""


class TransactionData(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the terminal puts into the CDOLs. `unpredictable_number` is injected so a
    simulation replays; production draws it from the HSM or a CSPRNG."""

    amount_fen: int
    date: dt.date
    unpredictable_number: bytes
    other_fen: int = 0
    currency: str = TERMINAL_CURRENCY  # ISO 4217 numeric
    country: str = TERMINAL_COUNTRY  # ISO 3166 numeric
    txn_type: int = 0  # 9C: 00 goods and services
    tvr: bytes = bytes(5)

    def __post_init__(self) -> None:
        for name, fen in (("amount_fen", self.amount_fen), ("other_fen", self.other_fen)):
            if not 0 <= fen <= AMOUNT_FEN_MAX:
                raise ValueError(f"{name} must be 0..{AMOUNT_FEN_MAX}, got {fen}")
        if len(self.unpredictable_number) != 4:
            raise ValueError("unpredictable_number must be 4 bytes")
        if len(self.tvr) != 5:
            raise ValueError("tvr must be 5 bytes")
        for name, code in (("currency", self.currency), ("country", self.country)):
            if len(code) != 3 or not code.isdigit():
                raise ValueError(f"{name} must be 3 digits, got {code!r}")
        if not 0 <= self.txn_type <= 99:
            raise ValueError("txn_type must be 0..99")

    def dol_values(self) -> dict[int, bytes]:
        return {
            Tag.amount: bcd(self.amount_fen, 6),
            Tag.amount_other: bcd(self.other_fen, 6),
            Tag.terminal_country: bcd(int(self.country), 2),
            Tag.tvr: self.tvr,
            Tag.currency: bcd(int(self.currency), 2),
            Tag.txn_date: date_bcd(self.date),
            Tag.txn_type: bcd(self.txn_type, 1),
            Tag.unpredictable_number: self.unpredictable_number,
        }


class ApplicationCryptogram(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One GENERATE AC answer and `mac_data`, the exact bytes the cryptogram covers:
    the issuer verifies `ac` over `mac_data` with the AC session key for `atc`."""

    cid: int
    atc: bytes
    ac: bytes
    iad: bytes
    mac_data: bytes

    @property
    def cryptogram_type(self) -> CryptogramType:
        return CryptogramType(self.cid & 0xC0)

    def __repr__(self) -> str:
        return (
            f"ApplicationCryptogram({self.cryptogram_type.name}, atc={self.atc.hex()}, "
            f"ac=<masked>, mac_data={len(self.mac_data)} bytes)"
        )


class FinancialSession:
    """One transaction flow with the financial application of the card in `reader`
    (connected by the caller, who may share the power-on with other applications)."""

    def __init__(
        self,
        reader: Reader,
        *,
        deadline_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self._deadline_s = deadline_s
        self._clock = clock
        self._state = SessionState.idle
        self._selection: AppSelection | None = None
        self._options: ProcessingOptions | None = None
        self._objects: dict[int, bytes] = {}
        self._record: FinancialRecord | None = None
        self._txn: TransactionData | None = None
        self._arqc: ApplicationCryptogram | None = None
        self._cdol1_data = b""
        self._final: ApplicationCryptogram | None = None

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def record(self) -> FinancialRecord | None:
        """The account data once `read_records` succeeded."""
        return self._record

    @property
    def final_cryptogram(self) -> ApplicationCryptogram | None:
        """The TC or AAC that ended the transaction (kept for clearing)."""
        return self._final

    # -- the steps ------------------------------------------------------------------------

    def select_ppse(self) -> list[AppEntry]:
        """SELECT the payment directory; its applications, highest priority first. A
        refusal leaves the state as it was (the terminal may select by AID instead)."""
        self._expect("select_ppse", SessionState.idle, SessionState.completed, SessionState.failed)
        started = self._clock()
        with self._step(keep_state=True):
            answer = self._transmit(_select_command(PPSE_NAME), started)
            fci = self._ok(answer, "SELECT PPSE", selecting=True)
            entries = parse_directory(fci)
        self._state = SessionState.directory_read
        return entries

    def select(self, aid: bytes) -> AppSelection:
        """SELECT the application by AID: starts a new transaction on the card. A refusal
        (`application_not_found` and others) leaves the state as it was."""
        self._expect(
            "select",
            SessionState.idle,
            SessionState.directory_read,
            SessionState.completed,
            SessionState.failed,
        )
        started = self._clock()
        with self._step(keep_state=True):
            fci = self._ok(self._transmit(_select_command(aid), started), "SELECT", selecting=True)
            selection = parse_app_fci(fci, aid)
        self._selection, self._options, self._record = selection, None, None
        self._objects, self._txn, self._arqc, self._final = {}, None, None, None
        self._state = SessionState.selected
        return selection

    def get_processing_options(self) -> ProcessingOptions:
        """GET PROCESSING OPTIONS with the PDOL filled from the terminal's country and
        currency (anything else the PDOL asks for is zero-filled)."""
        self._expect("get_processing_options", SessionState.selected)
        selection = _known(self._selection)
        started = self._clock()
        with self._step():
            values: dict[int, bytes] = {
                Tag.terminal_country: bcd(int(TERMINAL_COUNTRY), 2),
                Tag.currency: bcd(int(TERMINAL_CURRENCY), 2),
            }
            pdol_data = build_dol(parse_dol(selection.pdol), values)
            command = CommandApdu(
                0x80, 0xA8, 0x00, 0x00, encode(Tlv(Tag.command_template, pdol_data)), 256
            )
            options = parse_gpo(self._ok(self._transmit(command, started), "GPO"))
        self._options = options
        self._state = SessionState.initiated
        return options

    def read_records(self) -> FinancialRecord:
        """READ RECORD every record the AFL names; the account data among them. The
        CDOLs must be there too: without them no cryptogram can be asked for."""
        self._expect("read_records", SessionState.initiated)
        options = _known(self._options)
        started = self._clock()
        objects: dict[int, bytes] = {}
        with self._step():
            for sfi, number in afl_records(options.afl):
                command = CommandApdu(0x00, 0xB2, number, (sfi << 3) | 0x04, le=256)
                answer = self._ok(self._transmit(command, started), f"READ RECORD {sfi}/{number}")
                collect_record_objects(objects, parse_record(answer))
            record = financial_record(objects)
            for tag in (Tag.cdol1, Tag.cdol2):
                if tag not in objects:
                    raise FinancialCardError(FinancialResult.missing_data, f"tag {tag:X} missing")
                parse_dol(objects[tag])
        self._objects, self._record = objects, record
        self._state = SessionState.records_read
        return record

    def generate_ac(self, txn: TransactionData) -> ApplicationCryptogram:
        """First GENERATE AC, asking for an ARQC. The card answers an ARQC (go online:
        state `online_pending`) or an AAC (declined offline: `completed`)."""
        self._expect("generate_ac", SessionState.records_read)
        aip = _known(self._options).aip
        started = self._clock()
        with self._step():
            data = build_dol(parse_dol(self._objects[Tag.cdol1]), txn.dol_values())
            command = CommandApdu(0x80, 0xAE, CryptogramType.arqc, 0x00, data, 256)
            answer = parse_generate_ac(self._ok(self._transmit(command, started), "GENERATE AC"))
            kind = CryptogramType(answer.cid & 0xC0)
            if kind is CryptogramType.tc:
                raise FinancialCardError(
                    FinancialResult.invalid_data, "the card answered a TC to an ARQC request"
                )
            cryptogram = _cryptogram(answer, data, aip)
        self._txn, self._cdol1_data = txn, data
        if kind is CryptogramType.arqc:
            self._arqc, self._state = cryptogram, SessionState.online_pending
        else:
            self._final, self._state = cryptogram, SessionState.completed
        return cryptogram

    def complete(self, arc: bytes, arpc: bytes) -> bool:
        """Second GENERATE AC with the issuer's answer (8A ARC, 91 ARPC || ARC). Asks for
        a TC when the ARC approves, an AAC otherwise; True when the card answers TC."""
        self._expect("complete", SessionState.online_pending)
        if len(arc) != ARC_BYTES or len(arpc) != AC_BYTES:
            raise ValueError("complete() needs a 2-byte ARC and an 8-byte ARPC (method 1)")
        txn, arqc, aip = _known(self._txn), _known(self._arqc), _known(self._options).aip
        started = self._clock()
        with self._step():
            values = txn.dol_values() | {Tag.arc: arc, Tag.issuer_auth_data: arpc + arc}
            data = build_dol(parse_dol(self._objects[Tag.cdol2]), values)
            wanted = CryptogramType.tc if arc == ARC_APPROVED else CryptogramType.aac
            command = CommandApdu(0x80, 0xAE, wanted, 0x00, data, 256)
            answer = parse_generate_ac(self._ok(self._transmit(command, started), "GENERATE AC"))
            kind = CryptogramType(answer.cid & 0xC0)
            if kind is CryptogramType.arqc or kind > wanted or answer.atc != arqc.atc:
                raise FinancialCardError(
                    FinancialResult.invalid_data,
                    f"second GENERATE AC answered {kind.name} (ATC {answer.atc.hex()})"
                    f" to a {wanted.name} request in transaction {arqc.atc.hex()}",
                )
            final = _cryptogram(answer, self._cdol1_data + data, aip)
        self._final, self._state = final, SessionState.completed
        return kind is CryptogramType.tc

    # -- plumbing -------------------------------------------------------------------------

    def _expect(self, operation: str, *states: SessionState) -> None:
        if self._state not in states:
            allowed = ", ".join(s.value for s in states)
            raise WrongSessionState(
                f"cannot {operation}: the session is {self._state.value} (needs {allowed})"
            )

    @contextlib.contextmanager
    def _step(self, *, keep_state: bool = False) -> Iterator[None]:
        """A failed step leaves the session `broken` (reader) or `failed` (card)."""
        try:
            yield
        except FinancialCardError as exc:
            if exc.result is FinancialResult.reader_failed:
                self._state = SessionState.broken
            elif not keep_state:
                self._state = SessionState.failed
            raise

    def _transmit(self, command: CommandApdu, started: float) -> ResponseApdu:
        remaining_s = self._deadline_s - (self._clock() - started)
        if remaining_s <= 0:
            raise FinancialCardError(
                FinancialResult.deadline_exceeded,
                f"{self._deadline_s} s spent before INS {command.ins:02X}",
            )
        try:
            return self._reader.transmit(command, deadline_s=remaining_s)
        except ReaderError as exc:
            raise FinancialCardError(
                FinancialResult.reader_failed, f"{self._reader.name}: {exc}"
            ) from exc

    @staticmethod
    def _ok(response: ResponseApdu, what: str, *, selecting: bool = False) -> bytes:
        if selecting and response.sw == StatusWord.file_not_found:
            raise FinancialCardError(
                FinancialResult.application_not_found, f"{what}: 6A82", sw=response.sw
            )
        if not response.ok:
            raise FinancialCardError(
                FinancialResult.card_refused, f"{what}: {response.status}", sw=response.sw
            )
        return response.data


def _known(value: _T | None) -> _T:
    """Data set together with the state that requires it; None here is a bug, and it
    must fail loudly even under -O (hence no assert)."""
    if value is None:
        raise AssertionError("financial session: state and data disagree")
    return value


def _select_command(name: bytes) -> CommandApdu:
    return CommandApdu(0x00, 0xA4, 0x04, 0x00, name, 256)


def _cryptogram(answer: AcResponse, dol_data: bytes, aip: bytes) -> ApplicationCryptogram:
    return ApplicationCryptogram(
        cid=answer.cid,
        atc=answer.atc,
        ac=answer.ac,
        iad=answer.iad,
        mac_data=ac_mac_data(dol_data, aip, answer.atc, answer.iad),
    )
