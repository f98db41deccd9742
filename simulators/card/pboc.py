"""The financial application of the virtual social security card: a PBOC debit
application (UnionPay AID A000000333010101, DOMAIN.md §3.5) that goes online for
every transaction.

What it answers (everything else: 6D00; a command in the wrong phase: 6985):
- SELECT 2PAY.SYS.DDF01 (PPSE) and 1PAY.SYS.DDF01 (PSE): one FCI with the directory
  (BF0C / 61 {4F, 50, 87}). A real contact PSE names a directory file to read
  instead; answering both the same way is a simplification.
- SELECT the AID: FCI with label "PBOC DEBIT", priority 1 and PDOL 9F1A 02 5F2A 02
  (terminal country and transaction currency; the card checks only their length).
- GET PROCESSING OPTIONS (80 A8): format 2, AIP 0C00 (terminal risk management and
  issuer authentication; no offline data authentication, no cardholder verification
  here: the PIN belongs to the social security application) and AFL 08010100 10010100.
- READ RECORD (00 B2): SFI 1 record 1 {57 track 2, 5F20 name, 9F61 ID, 9F62 type},
  SFI 2 record 1 {5A, 5F24, 5F25, 5F34, 5F28, 9F07, 9F08, 8C CDOL1, 8D CDOL2}.
  5F20 is the fixed placeholder "YKT/CARDHOLDER": 5F20 is ASCII and the holder's name
  is Chinese; 9F61 carries the holder's ID number as PBOC cards do.
- GENERATE AC (80 AE), first: ATC + 1 (persistent; once per transaction, so the second
  GENERATE AC of the same transaction keeps it and the ARPC is checked with the ARQC's
  session key), AAC if asked for one, otherwise ARQC (online only). Second (CDOL2
  8A 02 91 0A 95 05 9F37 04): TC when a TC is asked for, ARC is "00" and the ARPC
  (method 1, 91 = ARPC || ARC) is right; AAC otherwise. Answers in format 2
  {9F27, 9F36, 9F26, 9F10}; the cryptogram covers `card.emv_data.ac_mac_data`.
- GET CHALLENGE (00 84, Le 8): eight bytes from `random_bytes`.

Invariant: `process` never raises; every malformed command gets a status word.
"""

from __future__ import annotations

import enum
import hmac
import secrets
from collections.abc import Callable

from card.apdu import CommandApdu, ResponseApdu, StatusWord
from card.emv_data import (
    PPSE_NAME,
    PSE_NAME,
    UNIONPAY_DEBIT_AID,
    CryptogramType,
    Tag,
    ac_mac_data,
    date_bcd,
    dol_length,
    pan_bcd,
    parse_dol,
    split_dol,
    track2,
)
from card.tlv import Tlv, TlvError, encode, parse
from hsm.emv import arpc_method_1, derive_ac_session_key, generate_ac
from hsm.keys import SecretKey
from simulators.card.keys import PAN_SEQUENCE, CardKeys
from simulators.population import Card, Person

LABEL = b"PBOC DEBIT"
PDOL = bytes.fromhex("9F1A025F2A02")
CDOL1 = bytes.fromhex("9F02069F03069F1A0295055F2A029A039C019F3704")
CDOL2 = bytes.fromhex("8A02910A95059F3704")
AIP = bytes.fromhex("0C00")
AFL = bytes.fromhex("0801010010010100")
HOLDER_NAME = b"YKT/CARDHOLDER"
SERVICE_CODE = "220"  # international IC card, issuer authorisation, PIN if possible
ATC_MAX = 0xFFFF
CHALLENGE_BYTES = 8
ARC_APPROVED = b"00"

# IAD (9F10): 07, key index 01, cryptogram version 01, CVR (03 b1 b2 b3), algorithm 01
# (3DES). CVR byte 1: bits 8-7 the second AC (00 AAC, 01 TC, 10 not asked yet), bits
# 6-5 the first (00 AAC, 10 ARQC), bit 4 issuer authentication failed.
IAD_HEAD = bytes.fromhex("070101")
IAD_ALGORITHM_3DES = b"\x01"
CVR_SECOND_NOT_ASKED = 0x80
CVR_SECOND_TC = 0x40
CVR_FIRST_ARQC = 0x20
CVR_ISSUER_AUTH_FAILED = 0x08

_PDOL = parse_dol(PDOL)
_CDOL1 = parse_dol(CDOL1)
_CDOL2 = parse_dol(CDOL2)


class _Phase(enum.Enum):
    idle = "idle"
    directory = "directory"  # PPSE/PSE selected
    selected = "selected"
    initiated = "initiated"  # GPO answered
    online = "online"  # ARQC given, second GENERATE AC expected
    done = "done"


def _sw(sw: StatusWord) -> ResponseApdu:
    return ResponseApdu(b"", sw)


def _ok(obj: Tlv) -> ResponseApdu:
    return ResponseApdu(encode(obj), StatusWord.ok)


def _tlv(tag: int, value: bytes) -> Tlv:
    return Tlv(tag, value)


class PbocApplication:
    def __init__(
        self,
        card: Card,
        person: Person,
        keys: CardKeys,
        *,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._keys = keys
        self._random_bytes = random_bytes
        self._records = _personalise(card, person)
        self._atc = 0  # persistent: survives reset()
        self._phase = _Phase.idle
        self._session_key: SecretKey | None = None
        self._cdol1_data = b""
        self._arqc = b""

    def __repr__(self) -> str:
        return f"PbocApplication(atc={self._atc}, phase={self._phase.value})"

    @property
    def aids(self) -> tuple[bytes, ...]:
        return (PPSE_NAME, PSE_NAME, UNIONPAY_DEBIT_AID)

    @property
    def atc(self) -> int:
        """The application transaction counter (persistent)."""
        return self._atc

    def reset(self) -> None:
        self._phase = _Phase.idle
        self._forget_transaction()

    def select(self, aid: bytes) -> ResponseApdu:
        self._forget_transaction()
        if aid in (PPSE_NAME, PSE_NAME):
            self._phase = _Phase.directory
            entry = Tlv(
                Tag.directory_entry,
                children=(
                    _tlv(Tag.aid, UNIONPAY_DEBIT_AID),
                    _tlv(Tag.label, LABEL),
                    _tlv(Tag.priority, b"\x01"),
                ),
            )
            directory = Tlv(Tag.fci_issuer_discretionary, children=(entry,))
            return _ok(_fci(aid, (directory,)))
        self._phase = _Phase.selected
        proprietary = (
            _tlv(Tag.label, LABEL),
            _tlv(Tag.priority, b"\x01"),
            _tlv(Tag.pdol, PDOL),
            _tlv(Tag.language, b"zhen"),
        )
        return _ok(_fci(aid, proprietary))

    def process(self, command: CommandApdu) -> ResponseApdu:
        handlers = {
            (0x80, 0xA8): self._get_processing_options,
            (0x00, 0xB2): self._read_record,
            (0x80, 0xAE): self._generate_ac,
            (0x00, 0x84): self._get_challenge,
        }
        handler = handlers.get((command.cla, command.ins))
        if handler is None:
            known = {ins for _, ins in handlers}
            return _sw(
                StatusWord.class_not_supported
                if command.ins in known
                else StatusWord.instruction_not_supported
            )
        if self._phase in (_Phase.idle, _Phase.directory):
            return _sw(StatusWord.conditions_of_use_not_satisfied)
        return handler(command)

    # -- commands ---------------------------------------------------------------------------

    def _get_processing_options(self, command: CommandApdu) -> ResponseApdu:
        if (command.p1, command.p2) != (0, 0):
            return _sw(StatusWord.incorrect_p1_p2)
        if self._phase is not _Phase.selected:
            return _sw(StatusWord.conditions_of_use_not_satisfied)
        try:
            objs = parse(command.data)
        except TlvError:
            return _sw(StatusWord.wrong_data)
        if len(objs) != 1 or objs[0].tag != Tag.command_template:
            return _sw(StatusWord.wrong_data)
        if len(objs[0].value) != dol_length(_PDOL):
            return _sw(StatusWord.wrong_length)
        self._phase = _Phase.initiated
        answer = Tlv(Tag.response_format_2, children=(_tlv(Tag.aip, AIP), _tlv(Tag.afl, AFL)))
        return _ok(answer)

    def _read_record(self, command: CommandApdu) -> ResponseApdu:
        if command.p2 & 0x07 != 0x04 or command.p1 == 0:
            return _sw(StatusWord.incorrect_p1_p2)
        record = self._records.get((command.p2 >> 3, command.p1))
        if record is None:
            return _sw(StatusWord.record_not_found)
        return _ok(record)

    def _get_challenge(self, command: CommandApdu) -> ResponseApdu:
        if (command.p1, command.p2) != (0, 0):
            return _sw(StatusWord.incorrect_p1_p2)
        if command.data or command.le != CHALLENGE_BYTES:
            return _sw(StatusWord.wrong_length)
        return ResponseApdu(self._random_bytes(CHALLENGE_BYTES), StatusWord.ok)

    def _generate_ac(self, command: CommandApdu) -> ResponseApdu:
        requested = command.p1 & 0xC0
        if command.p2 != 0 or command.p1 & 0x3F or requested == 0xC0:  # no CDA, RFU type
            return _sw(StatusWord.incorrect_p1_p2)
        if self._phase is _Phase.initiated:
            return self._first_ac(CryptogramType(requested), command.data)
        if self._phase is _Phase.online:
            return self._second_ac(CryptogramType(requested), command.data)
        return _sw(StatusWord.conditions_of_use_not_satisfied)

    def _first_ac(self, requested: CryptogramType, data: bytes) -> ResponseApdu:
        if len(data) != dol_length(_CDOL1):
            return _sw(StatusWord.wrong_length)
        if self._atc >= ATC_MAX:  # the counter is spent: the application is finished
            return _sw(StatusWord.conditions_of_use_not_satisfied)
        self._atc += 1
        atc = self._atc.to_bytes(2, "big")
        key = derive_ac_session_key(self._keys.icc_master_ac, atc)
        self._session_key = key
        if requested is CryptogramType.aac:
            answered, cvr1 = CryptogramType.aac, CVR_SECOND_NOT_ASKED
            self._phase = _Phase.done
        else:  # a TC request is answered with an ARQC too: this card never approves offline
            answered, cvr1 = CryptogramType.arqc, CVR_SECOND_NOT_ASKED | CVR_FIRST_ARQC
            self._phase = _Phase.online
        self._cdol1_data = data
        answer, self._arqc = _cryptogram(key, answered, data, atc, cvr1)
        return answer

    def _second_ac(self, requested: CryptogramType, data: bytes) -> ResponseApdu:
        if requested is CryptogramType.arqc:
            return _sw(StatusWord.incorrect_p1_p2)
        key = self._session_key
        if key is None:  # cannot be in phase `online`; answered, since a card never raises
            return _sw(StatusWord.conditions_of_use_not_satisfied)
        if len(data) != dol_length(_CDOL2):
            return _sw(StatusWord.wrong_length)
        values = split_dol(_CDOL2, data)
        arc, issuer_auth = values[Tag.arc], values[Tag.issuer_auth_data]
        expected = arpc_method_1(key, self._arqc, arc)
        authentic = hmac.compare_digest(expected, issuer_auth[:8]) and issuer_auth[8:] == arc
        cvr1 = CVR_FIRST_ARQC | (0 if authentic else CVR_ISSUER_AUTH_FAILED)
        if requested is CryptogramType.tc and authentic and arc == ARC_APPROVED:
            answered, cvr1 = CryptogramType.tc, cvr1 | CVR_SECOND_TC
        else:
            answered = CryptogramType.aac
        self._phase = _Phase.done
        atc = self._atc.to_bytes(2, "big")
        answer, _ = _cryptogram(key, answered, self._cdol1_data + data, atc, cvr1)
        return answer

    def _forget_transaction(self) -> None:
        self._session_key, self._cdol1_data, self._arqc = None, b"", b""


def _cryptogram(
    key: SecretKey, kind: CryptogramType, dol_data: bytes, atc: bytes, cvr1: int
) -> tuple[ResponseApdu, bytes]:
    """The format 2 answer and the cryptogram over `ac_mac_data`."""
    iad = IAD_HEAD + bytes((0x03, cvr1, 0x00, 0x00)) + IAD_ALGORITHM_3DES
    ac = generate_ac(key, ac_mac_data(dol_data, AIP, atc, iad))
    answer = Tlv(
        Tag.response_format_2,
        children=(
            _tlv(Tag.cid, bytes((kind,))),
            _tlv(Tag.atc, atc),
            _tlv(Tag.ac, ac),
            _tlv(Tag.iad, iad),
        ),
    )
    return _ok(answer), ac


def _fci(name: bytes, proprietary: tuple[Tlv, ...]) -> Tlv:
    return Tlv(
        Tag.fci,
        children=(_tlv(Tag.df_name, name), Tlv(Tag.fci_proprietary, children=proprietary)),
    )


def _personalise(card: Card, person: Person) -> dict[tuple[int, int], Tlv]:
    """The records as the issuer writes them, by (SFI, record number)."""
    holder = (
        _tlv(Tag.track2, track2(card.pan, card.expiry_date, SERVICE_CODE, "0000000000")),
        _tlv(Tag.holder_name, HOLDER_NAME),
        _tlv(Tag.holder_id, person.certno.encode("ascii")),
        _tlv(Tag.holder_id_type, b"\x00"),
    )
    account = (
        _tlv(Tag.pan, pan_bcd(card.pan)),
        _tlv(Tag.expiry, date_bcd(card.expiry_date)),
        _tlv(Tag.effective, date_bcd(card.issue_date)),
        _tlv(Tag.psn, bytes.fromhex(PAN_SEQUENCE)),
        _tlv(Tag.issuer_country, bytes.fromhex("0156")),
        _tlv(Tag.usage_control, bytes.fromhex("FF00")),
        _tlv(Tag.app_version, bytes.fromhex("0030")),  # PBOC 3.0
        _tlv(Tag.cdol1, CDOL1),
        _tlv(Tag.cdol2, CDOL2),
    )
    return {
        (1, 1): Tlv(Tag.record, children=holder),
        (2, 1): Tlv(Tag.record, children=account),
    }
