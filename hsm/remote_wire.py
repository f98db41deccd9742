"""Wire format of the `remote` HSM backend: a length-prefixed TCP command protocol in
the payShield style, spoken by `hsm.remote.RemoteHsm` and served by
`simulators.hsm_server` (DESIGN.md §5). Keys are named by label; key material never
travels.

    message  = length(2, big-endian, 1..32766) payload          (at most 32 KiB in all)
    request  = header(4) code(2) field*
    reply    = header(4) reply-code(2) error(2) field*
    field    = length(2, big-endian) value(length)

header      4 ASCII letters or digits chosen by the client, echoed in the reply; one
            request at a time per connection, so a reply is matched by its header.
reply-code  the request code with its second letter incremented (A->B ... Z->A).
error       2 decimal digits (`ErrorCode`); an ok reply carries the command's result
            fields, any other reply exactly one field: a message without secrets.

Field kinds: bytes (raw), text (UTF-8, no control characters), uint (decimal digits,
no leading zero), key = two fields (label text; version uint, empty = newest),
mac-alg (the `MacAlgorithm` value), key-list = count uint then per key five fields
(label, version, type, usage, check value). Below, fields without a size are
bytes(64); "(verify)" replies carry no field: error 00 means True, 15 False.

    code reply  Hsm method               request fields                   ok reply
    RA   RB     random_bytes             n uint(4)                        random bytes(4096)
    IA   IB     verify_card_cryptogram   master key, card_sn, factor,     (verify)
                                         challenge, cryptogram bytes(64)
    EA   EB     external_auth_cryptogram master key, card_sn, factor,     cryptogram bytes(64)
                                         challenge bytes(64)
    MA   MB     mac_generate             key, mac-alg, data bytes(16384)  mac bytes(64)
    MC   MD     mac_verify               key, mac-alg, data, mac          (verify)
    TA   TB     verify_terminal_mac      master key, terminal_id text(64), (verify)
                                         message bytes(16384), mac
    KQ   KR     verify_arqc              imk key, pan text(64), psn       (verify)
                                         text(64), atc, data, arqc
    KW   KX     arpc_method_1            imk key, pan, psn, atc, arqc,    arpc bytes(64)
                                         arc bytes(64)
    KY   KZ     arpc_method_2            EMV fields, arqc bytes, csu bytes, proprietary bytes; arpc
    CE   CF     translate_pin_format4    from key, to key, block bytes(64), pan text; block
    CC   CD     translate_pin_format0    from key, to key, block bytes(64), block bytes(64)
                                         pan text(64)
    EW   EX     sign                     key, data bytes(16384)           signature bytes(256)
    EY   EZ     verify_signature         key, data, signature bytes(256)  (verify)
    LK   LL     list_keys                (none)                           key-list

    error  meaning                              raised by the client
    00     ok (verify commands: it matches)     -
    10     key not found                        hsm.protocol.KeyNotFound
    11     wrong key type                       hsm.errors.KeyTypeError
    12     bad data length                      hsm.errors.DataLengthError
    13     bad data format                      hsm.errors.DataFormatError
    14     bad key length                       hsm.errors.KeyLengthError
    15     verification failed                  verify commands return False
    16     bad PIN block                        hsm.errors.PinBlockError
    17     algorithm unavailable                hsm.errors.AlgorithmUnavailable
    18     key usage does not permit it         hsm.errors.KeyUsageError
    19     HSM misconfigured (other)            hsm.errors.HsmMisconfigured
    68     command unknown or disabled          UnknownCommand (a RemoteProtocolError)
    69     request malformed                    RemoteProtocolError
    90     HSM unavailable behind the server    hsm.errors.HsmUnavailable
    99     internal error                       RemoteInternalError

What a client should do with each (hsm.errors): 10, 11, 14, 17, 18, 19 are
misconfiguration (no retry clears them), and so are 68 and 69 and any reply that is
not a message of this protocol (`RemoteProtocolError`: client and server of different
versions, or a port that is not an HSM's); 12, 13, 16 refuse the request's data; 90 is
transient, as are a refused connection, a lost connection and a missed deadline
(`HsmUnavailable`, raised by hsm.remote); 99 is unclassified.

Invariants: every field has a maximum length (above: bytes(n) = at most n bytes, text
at most 64 bytes, error messages 200, versions 9 digits); a payload decodes completely or
raises `RemoteProtocolError` naming what is wrong and where, never another exception;
encoding a value the format cannot carry raises `DataLengthError`/`DataFormatError`
before anything is sent; `repr` of a request or reply shows no field values.
"""

from __future__ import annotations

import asyncio
import enum
import re
from dataclasses import dataclass
from typing import TypeAlias

from hsm.errors import (
    AlgorithmUnavailable,
    DataFormatError,
    DataLengthError,
    HsmError,
    HsmMisconfigured,
    HsmUnavailable,
    KeyLengthError,
    KeyTypeError,
    KeyUsageError,
    PinBlockError,
    VerificationFailed,
)
from hsm.protocol import KeyInfo, KeyNotFound, KeyRef, MacAlgorithm

MAX_MESSAGE_BYTES = 32 * 1024  # length prefix included
MAX_PAYLOAD_BYTES = MAX_MESSAGE_BYTES - 2
HEADER_BYTES = 4
DATA_MAX = 16 * 1024  # data to MAC or sign, terminal messages
VALUE_MAX = 64  # card serials, factors, challenges, cryptograms, MACs, ATC, ARC, PIN blocks
SIGNATURE_MAX = 256
RANDOM_MAX = 4096
TEXT_MAX = 64  # labels, PAN, PSN, terminal ids, key types, usages, check values
VERSION_DIGITS = 9
MESSAGE_MAX = 200  # the text of an error reply

Value: TypeAlias = bytes | str | int | KeyRef | MacAlgorithm | tuple[KeyInfo, ...]


class RemoteProtocolError(HsmMisconfigured):
    """Bytes that are not a message of this protocol, or a reply that does not answer
    the request; `header` and `code` are set when they could be read.

    Misconfiguration for a client: a well-behaved server of the same version never
    sends one (a connection that broke mid-reply is `HsmUnavailable`, not this)."""

    def __init__(self, message: str, *, header: str | None = None, code: str | None = None):
        super().__init__(message)
        self.header = header
        self.code = code


class UnknownCommand(RemoteProtocolError):
    """A well-formed header and code, but no command has that code."""


class RemoteInternalError(HsmError):
    """The remote HSM failed inside (error 99); its message names only the failure.
    Unclassified: neither known to clear nor known to persist."""


class ErrorCode(enum.Enum):
    ok = "00"
    key_not_found = "10"
    key_type = "11"
    data_length = "12"
    data_format = "13"
    key_length = "14"
    verification_failed = "15"
    pin_block = "16"
    algorithm_unavailable = "17"
    key_usage = "18"
    misconfigured = "19"
    command_unknown = "68"
    request_malformed = "69"
    unavailable = "90"
    internal = "99"


# Subclasses before their bases: the first match wins.
_ERROR_CLASSES: tuple[tuple[type[HsmError], ErrorCode], ...] = (
    (KeyNotFound, ErrorCode.key_not_found),
    (KeyTypeError, ErrorCode.key_type),
    (KeyLengthError, ErrorCode.key_length),
    (KeyUsageError, ErrorCode.key_usage),
    (PinBlockError, ErrorCode.pin_block),
    (DataFormatError, ErrorCode.data_format),
    (DataLengthError, ErrorCode.data_length),
    (VerificationFailed, ErrorCode.verification_failed),
    (AlgorithmUnavailable, ErrorCode.algorithm_unavailable),
    (UnknownCommand, ErrorCode.command_unknown),
    (RemoteProtocolError, ErrorCode.request_malformed),
    (HsmMisconfigured, ErrorCode.misconfigured),
    (HsmUnavailable, ErrorCode.unavailable),
)


def error_code_for(exc: BaseException) -> ErrorCode:
    for cls, error in _ERROR_CLASSES:
        if isinstance(exc, cls):
            return error
    return ErrorCode.internal


def exception_for(error: ErrorCode, message: str) -> HsmError:
    """The exception the client raises for a non-ok reply."""
    for cls, candidate in _ERROR_CLASSES:
        if candidate is error:
            return cls(f"remote HSM: {message}")
    return RemoteInternalError(f"remote HSM error {error.value}: {message}")


class Kind(enum.Enum):
    bytes_ = "bytes"
    text = "text"
    uint = "uint"
    key = "key"
    mac_alg = "mac-alg"
    key_list = "key-list"


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    max_len: int = TEXT_MAX  # bytes of the value (uint: digits)


@dataclass(frozen=True)
class Spec:
    request: tuple[Field, ...]
    reply: tuple[Field, ...]
    verify: bool = False  # ok = True, error 15 = False


class Command(enum.StrEnum):
    """Value: the request code; name: the `Hsm` method it runs, whose positional
    arguments are the request fields in order."""

    random_bytes = "RA"
    verify_card_cryptogram = "IA"
    external_auth_cryptogram = "EA"
    mac_generate = "MA"
    mac_verify = "MC"
    verify_terminal_mac = "TA"
    verify_arqc = "KQ"
    arpc_method_1 = "KW"
    arpc_method_2 = "KY"
    translate_pin_format4 = "CE"
    translate_pin_format0 = "CC"
    sign = "EW"
    verify_signature = "EY"
    list_keys = "LK"


def _b(name: str, max_len: int = VALUE_MAX) -> Field:
    return Field(name, Kind.bytes_, max_len)


def _t(name: str) -> Field:
    return Field(name, Kind.text)


def _k(name: str) -> Field:
    return Field(name, Kind.key)


_CARD = (_k("master"), _b("card_sn"), _b("process_factor"), _b("challenge"))
_EMV = (_k("issuer_master"), _t("pan"), _t("psn"), _b("atc"))
_ALG = Field("algorithm", Kind.mac_alg)
_MESSAGE = Field("message", Kind.text, MESSAGE_MAX)

SPECS: dict[Command, Spec] = {
    Command.random_bytes: Spec((Field("n", Kind.uint, 4),), (_b("random", RANDOM_MAX),)),
    Command.verify_card_cryptogram: Spec((*_CARD, _b("cryptogram")), (), verify=True),
    Command.external_auth_cryptogram: Spec(_CARD, (_b("cryptogram"),)),
    Command.mac_generate: Spec((_k("key"), _ALG, _b("data", DATA_MAX)), (_b("mac"),)),
    Command.mac_verify: Spec((_k("key"), _ALG, _b("data", DATA_MAX), _b("mac")), (), True),
    Command.verify_terminal_mac: Spec(
        (_k("master"), _t("terminal_id"), _b("message", DATA_MAX), _b("mac")), (), True
    ),
    Command.verify_arqc: Spec((*_EMV, _b("data", DATA_MAX), _b("arqc")), (), verify=True),
    Command.arpc_method_1: Spec((*_EMV, _b("arqc"), _b("arc")), (_b("arpc"),)),
    Command.arpc_method_2: Spec(
        (*_EMV, _b("arqc"), _b("csu"), _b("proprietary_data")), (_b("arpc"),)
    ),
    Command.translate_pin_format4: Spec(
        (_k("from_key"), _k("to_key"), _b("block"), _t("pan")), (_b("block"),)
    ),
    Command.translate_pin_format0: Spec(
        (_k("from_key"), _k("to_key"), _b("block"), _t("pan")), (_b("block"),)
    ),
    Command.sign: Spec((_k("key"), _b("data", DATA_MAX)), (_b("signature", SIGNATURE_MAX),)),
    Command.verify_signature: Spec(
        (_k("key"), _b("data", DATA_MAX), _b("signature", SIGNATURE_MAX)), (), verify=True
    ),
    Command.list_keys: Spec((), (Field("keys", Kind.key_list),)),
}
_BY_CODE = {c.value: c for c in Command}


def reply_code(code: str) -> str:
    """payShield convention: the second letter incremented (Z wraps to A)."""
    return code[0] + chr((ord(code[1]) - ord("A") + 1) % 26 + ord("A"))


_BY_REPLY_CODE = {reply_code(c.value): c for c in Command}


@dataclass(frozen=True)
class Request:
    header: str
    command: Command
    args: tuple[Value, ...]

    def __repr__(self) -> str:
        return f"Request({self.header}, {self.command.value} {self.command.name}, {len(self.args)} args masked)"


@dataclass(frozen=True)
class Reply:
    header: str
    code: str
    error: ErrorCode
    values: tuple[Value, ...] = ()
    message: str = ""

    def __repr__(self) -> str:
        return (
            f"Reply({self.header}, {self.code}{self.error.value}, {len(self.values)} values masked)"
        )


# -- encoding ------------------------------------------------------------------------------


def _has_control(text: str) -> bool:
    return any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in text)


def _text_bytes(name: str, value: object, max_len: int) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if _has_control(value):
        raise DataFormatError(f"{name} must not contain control characters")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise DataFormatError(f"{name} is not encodable as UTF-8") from None
    if len(raw) > max_len:
        raise DataLengthError(f"{name} must be at most {max_len} bytes, got {len(raw)}")
    return raw


def _uint_bytes(name: str, value: object, digits: int) -> bytes:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0 or value >= 10**digits:
        raise DataLengthError(f"{name} must be 0..{10**digits - 1} on the wire, got {value}")
    return str(value).encode("ascii")


def _encode_value(f: Field, value: Value) -> list[bytes]:
    if f.kind is Kind.bytes_:
        if not isinstance(value, bytes):
            raise TypeError(f"{f.name} must be bytes, not {type(value).__name__}")
        if len(value) > f.max_len:
            raise DataLengthError(
                f"{f.name} must be at most {f.max_len} bytes for the remote HSM, got {len(value)}"
            )
        return [value]
    if f.kind is Kind.text:
        return [_text_bytes(f.name, value, f.max_len)]
    if f.kind is Kind.uint:
        return [_uint_bytes(f.name, value, f.max_len)]
    if f.kind is Kind.mac_alg:
        if not isinstance(value, MacAlgorithm):
            raise TypeError(f"{f.name} must be a MacAlgorithm, not {type(value).__name__}")
        return [value.value.encode("ascii")]
    if f.kind is Kind.key:
        if not isinstance(value, KeyRef):
            raise TypeError(f"{f.name} must be a KeyRef, not {type(value).__name__}")
        version = (
            b"" if value.version is None else _uint_bytes(f.name, value.version, VERSION_DIGITS)
        )
        return [_text_bytes(f"{f.name} label", value.label, f.max_len), version]
    if not isinstance(value, tuple):
        raise TypeError(f"{f.name} must be a tuple of KeyInfo, not {type(value).__name__}")
    out = [_uint_bytes(f"{f.name} count", len(value), 4)]
    for i in value:
        out.append(_text_bytes("label", i.label, TEXT_MAX))
        out.append(_uint_bytes("version", i.version, VERSION_DIGITS))
        out.extend(
            _text_bytes("key info", t, TEXT_MAX) for t in (i.key_type, i.usage, i.check_value)
        )
    return out


def _frame(parts: list[bytes]) -> bytes:
    payload = b"".join(parts)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise DataLengthError(f"message of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    return len(payload).to_bytes(2, "big") + payload


def _encode_fields(fields: tuple[Field, ...], values: tuple[Value, ...]) -> list[bytes]:
    if len(values) != len(fields):
        raise TypeError(f"{len(fields)} values expected, got {len(values)}")
    out: list[bytes] = []
    for f, value in zip(fields, values, strict=True):
        for raw in _encode_value(f, value):
            out.append(len(raw).to_bytes(2, "big") + raw)
    return out


def _check_header(header: str) -> bytes:
    if len(header) != HEADER_BYTES or not (header.isascii() and header.isalnum()):
        raise DataFormatError(f"header must be {HEADER_BYTES} ASCII letters or digits")
    return header.encode("ascii")


def encode_request(request: Request) -> bytes:
    """The whole message, length prefix included."""
    fields = _encode_fields(SPECS[request.command].request, request.args)
    return _frame([_check_header(request.header), request.command.value.encode(), *fields])


def encode_reply(reply: Reply) -> bytes:
    head = [_check_header(reply.header), reply.code.encode("ascii"), reply.error.value.encode()]
    if reply.error is not ErrorCode.ok:
        return _frame([*head, *_encode_fields((_MESSAGE,), (reply.message,))])
    command = _BY_REPLY_CODE.get(reply.code)
    if command is None:
        raise DataFormatError(f"reply code {reply.code!r} answers no command")
    return _frame([*head, *_encode_fields(SPECS[command].reply, reply.values)])


# -- decoding ------------------------------------------------------------------------------

_HEADER = re.compile(rb"[0-9A-Za-z]{4}")
_CODE = re.compile(rb"[A-Z]{2}")
_DIGITS = re.compile(rb"[0-9]{2}")


class _Cursor:
    """Reads a payload front to back; every shortfall is a RemoteProtocolError."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0
        self.header: str | None = None
        self.code: str | None = None

    def fail(self, message: str) -> RemoteProtocolError:
        return RemoteProtocolError(message, header=self.header, code=self.code)

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            left = len(self.data) - self.pos
            raise self.fail(f"{what}: {n} bytes needed at offset {self.pos}, {left} left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def field(self, name: str, max_len: int) -> bytes:
        n = int.from_bytes(self.take(2, f"length of {name}"), "big")
        if n > max_len:
            raise self.fail(f"{name} is {n} bytes at offset {self.pos - 2}, at most {max_len}")
        return self.take(n, name)

    def text(self, name: str, max_len: int = TEXT_MAX) -> str:
        raw = self.field(name, max_len)
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{name} is not UTF-8") from None
        if _has_control(value):
            raise self.fail(f"{name} contains a control character")
        return value

    def uint(self, name: str, digits: int) -> int:
        return self._decimal(name, self.field(name, digits))

    def optional_uint(self, name: str, digits: int) -> int | None:
        """An empty field is None; anything else must be a number."""
        raw = self.field(name, digits)
        return self._decimal(name, raw) if raw else None

    def _decimal(self, name: str, raw: bytes) -> int:
        if not raw.isdigit() or (raw.startswith(b"0") and len(raw) > 1):
            raise self.fail(f"{name} is not a decimal number without leading zeros")
        return int(raw)

    def ascii(self, n: int, what: str, pattern: re.Pattern[bytes]) -> str:
        raw = self.take(n, what)
        if not pattern.fullmatch(raw):
            raise self.fail(f"{what} {raw!r} does not match {pattern.pattern!r}")
        return raw.decode("ascii")

    def end(self) -> None:
        if self.pos != len(self.data):
            raise self.fail(f"{len(self.data) - self.pos} bytes after the last field")


def _decode_value(cur: _Cursor, f: Field) -> Value:
    if f.kind is Kind.bytes_:
        return cur.field(f.name, f.max_len)
    if f.kind is Kind.text:
        return cur.text(f.name, f.max_len)
    if f.kind is Kind.uint:
        return cur.uint(f.name, f.max_len)
    if f.kind is Kind.mac_alg:
        name = cur.text(f.name)
        try:
            return MacAlgorithm(name)
        except ValueError:
            raise cur.fail(f"{f.name} {name!r} is not a MAC algorithm") from None
    if f.kind is Kind.key:
        label = cur.text(f"{f.name} label", f.max_len)
        return KeyRef(label, cur.optional_uint(f"{f.name} version", VERSION_DIGITS))
    count = cur.uint(f"{f.name} count", 4)
    infos = []
    for _ in range(count):
        label, version = cur.text("label"), cur.uint("version", VERSION_DIGITS)
        infos.append(
            KeyInfo(
                label, version, cur.text("key_type"), cur.text("usage"), cur.text("check_value")
            )
        )
    return tuple(infos)


def _check_size(payload: bytes) -> None:
    if not 1 <= len(payload) <= MAX_PAYLOAD_BYTES:
        raise RemoteProtocolError(
            f"payload of {len(payload)} bytes, must be 1..{MAX_PAYLOAD_BYTES}"
        )


def decode_request(payload: bytes) -> Request:
    _check_size(payload)
    cur = _Cursor(payload)
    cur.header = cur.ascii(HEADER_BYTES, "header", _HEADER)
    cur.code = cur.ascii(2, "command code", _CODE)
    command = _BY_CODE.get(cur.code)
    if command is None:
        raise UnknownCommand(f"no command {cur.code!r}", header=cur.header, code=cur.code)
    args = tuple(_decode_value(cur, f) for f in SPECS[command].request)
    cur.end()
    return Request(cur.header, command, args)


def decode_reply(payload: bytes) -> Reply:
    _check_size(payload)
    cur = _Cursor(payload)
    cur.header = cur.ascii(HEADER_BYTES, "header", _HEADER)
    cur.code = cur.ascii(2, "reply code", _CODE)
    digits = cur.ascii(2, "error code", _DIGITS)
    try:
        error = ErrorCode(digits)
    except ValueError:
        raise cur.fail(f"error code {digits!r} is not defined") from None
    if error is not ErrorCode.ok:
        message = cur.text("message", MESSAGE_MAX)
        cur.end()
        return Reply(cur.header, cur.code, error, (), message)
    command = _BY_REPLY_CODE.get(cur.code)
    if command is None:
        raise cur.fail(f"reply code {cur.code!r} answers no command")
    values = tuple(_decode_value(cur, f) for f in SPECS[command].reply)
    cur.end()
    return Reply(cur.header, cur.code, error, values)


def unframe(message: bytes) -> bytes:
    """The payload of one whole message (length prefix included, nothing after)."""
    if len(message) < 2:
        raise RemoteProtocolError(f"message of {len(message)} bytes has no length prefix")
    n = int.from_bytes(message[:2], "big")
    if n != len(message) - 2:
        raise RemoteProtocolError(f"length prefix says {n} bytes, {len(message) - 2} follow")
    _check_size(message[2:])
    return message[2:]


async def read_payload(reader: asyncio.StreamReader) -> bytes:
    """One payload from the stream. A closed stream raises `asyncio.IncompleteReadError`
    (the caller decides what that means); a bad length raises RemoteProtocolError."""
    n = int.from_bytes(await reader.readexactly(2), "big")
    if not 1 <= n <= MAX_PAYLOAD_BYTES:
        raise RemoteProtocolError(f"length prefix {n}, must be 1..{MAX_PAYLOAD_BYTES}")
    return await reader.readexactly(n)


def clip_message(message: str) -> str:
    """An error text that fits the message field: no control characters, short."""
    clean = "".join(ch if ch.isprintable() else " " for ch in message)
    raw = clean.encode("utf-8", errors="replace")[:MESSAGE_MAX]
    return raw.decode("utf-8", errors="ignore")
