"""The remote HSM wire format (hsm.remote_wire): every command and reply survives an
encode/decode round trip; the decoders turn any byte string into a value or a
`RemoteProtocolError` and nothing else (fuzzed, from random bytes and from mutated
valid messages); every maximum length is enforced on both sides; error codes map
to the soft backend's exception classes and back."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsm.errors import (
    DataFormatError,
    DataLengthError,
    HsmError,
    KeyTypeError,
    PinBlockError,
    VerificationFailed,
)
from hsm.protocol import KeyInfo, KeyNotFound, KeyRef, MacAlgorithm
from hsm.remote_wire import (
    DATA_MAX,
    MAX_MESSAGE_BYTES,
    MAX_PAYLOAD_BYTES,
    RANDOM_MAX,
    SPECS,
    Command,
    ErrorCode,
    Field,
    Kind,
    RemoteInternalError,
    RemoteProtocolError,
    Reply,
    Request,
    UnknownCommand,
    Value,
    clip_message,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
    error_code_for,
    exception_for,
    read_payload,
    reply_code,
    unframe,
)
from hsm.soft import RANDOM_BYTES_MAX

texts = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=20)
headers = st.text(
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", min_size=4, max_size=4
)
key_refs = st.builds(KeyRef, texts, st.none() | st.integers(1, 10**9 - 1))
key_infos = st.builds(KeyInfo, texts, st.integers(0, 10**9 - 1), texts, texts, texts)


def value_of(f: Field) -> st.SearchStrategy[Value]:
    if f.kind is Kind.bytes_:
        return st.binary(max_size=min(f.max_len, 300))
    if f.kind is Kind.text:
        return texts
    if f.kind is Kind.uint:
        return st.integers(0, 10**f.max_len - 1)
    if f.kind is Kind.key:
        return key_refs
    if f.kind is Kind.mac_alg:
        return st.sampled_from(MacAlgorithm)
    return st.lists(key_infos, max_size=4).map(tuple)


@st.composite
def requests(draw: st.DrawFn) -> Request:
    command = draw(st.sampled_from(Command))
    args = tuple(draw(value_of(f)) for f in SPECS[command].request)
    return Request(draw(headers), command, args)


@st.composite
def replies(draw: st.DrawFn) -> Reply:
    command = draw(st.sampled_from(Command))
    code = reply_code(command.value)
    error = draw(st.sampled_from(ErrorCode))
    if error is not ErrorCode.ok:
        return Reply(draw(headers), code, error, (), draw(texts))
    values = tuple(draw(value_of(f)) for f in SPECS[command].reply)
    return Reply(draw(headers), code, error, values)


@given(requests())
def test_every_request_round_trips(request: Request) -> None:
    assert decode_request(unframe(encode_request(request))) == request


@given(replies())
def test_every_reply_round_trips(reply: Reply) -> None:
    assert decode_reply(unframe(encode_reply(reply))) == reply


def test_every_command_has_a_distinct_code_and_reply_code() -> None:
    codes = [c.value for c in Command] + [reply_code(c.value) for c in Command]
    assert len(set(codes)) == len(codes)
    assert reply_code("KQ") == "KR" and reply_code("EZ") == "EA"
    assert {c.name for c in Command} >= {"random_bytes", "sign", "list_keys"}


@settings(max_examples=1000)
@given(st.binary(max_size=200))
def test_decoders_on_arbitrary_bytes_give_a_value_or_protocol_error(data: bytes) -> None:
    for decode in (decode_request, decode_reply, unframe):
        with contextlib.suppress(RemoteProtocolError):
            decode(data)


@settings(max_examples=500)
@given(requests(), replies(), st.data())
def test_decoders_on_mutated_messages_give_a_value_or_protocol_error(
    request: Request, reply: Reply, data: st.DataObject
) -> None:
    """Start from valid payloads, so the fuzzing reaches the field decoders."""
    for payload, decode in (
        (encode_request(request)[2:], decode_request),
        (encode_reply(reply)[2:], decode_reply),
    ):
        raw = bytearray(payload)
        for _ in range(data.draw(st.integers(1, 4))):
            op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
            at = data.draw(st.integers(0, len(raw)))
            if op == "flip" and at < len(raw):
                raw[at] = data.draw(st.integers(0, 255))
            elif op == "cut":
                del raw[at:]
            else:
                raw[at:at] = data.draw(st.binary(min_size=1, max_size=3))
        with contextlib.suppress(RemoteProtocolError):
            decode(bytes(raw))


def test_message_size_limit() -> None:
    """32 KiB in all: a payload of MAX_PAYLOAD_BYTES is framed, one more is refused."""
    assert MAX_MESSAGE_BYTES == 32 * 1024 and MAX_PAYLOAD_BYTES == MAX_MESSAGE_BYTES - 2
    with pytest.raises(RemoteProtocolError, match=r"must be 1\.\.32766"):
        unframe(b"\x80\x00" + bytes(0x8000))
    with pytest.raises(RemoteProtocolError, match=r"must be 1\.\.32766"):
        decode_request(bytes(MAX_PAYLOAD_BYTES + 1))
    with pytest.raises(RemoteProtocolError, match="length prefix says 5"):
        unframe(b"\x00\x05abc")
    many = tuple(KeyInfo("k" * 64, 1, "AES256", "u" * 64, "c" * 16) for _ in range(250))
    with pytest.raises(DataLengthError, match="exceeds 32766"):
        encode_reply(Reply("0001", "LL", ErrorCode.ok, (many,)))


def test_field_limits_are_enforced_on_encode_and_decode() -> None:
    key = KeyRef("ecard.sign")
    assert encode_request(Request("0001", Command.sign, (key, bytes(DATA_MAX))))
    with pytest.raises(DataLengthError, match="data must be at most 16384 bytes"):
        encode_request(Request("0001", Command.sign, (key, bytes(DATA_MAX + 1))))
    with pytest.raises(DataLengthError, match="pan must be at most 64 bytes"):
        encode_request(Request("0001", Command.verify_arqc, (key, "1" * 65, "01", b"", b"", b"")))
    with pytest.raises(DataFormatError, match="control characters"):
        encode_request(Request("0001", Command.verify_terminal_mac, (key, "T\n1", b"", b"")))
    with pytest.raises(DataFormatError, match="header"):
        encode_request(Request("00-1", Command.list_keys, ()))
    # mac_verify with a 65-byte mac, built by hand: the decoder names the field and offset.
    payload = b"0001MC" + b"\x00\x01k\x00\x00" + b"\x00\x0bHMAC-SHA256" + b"\x00\x00\x00\x41"
    with pytest.raises(RemoteProtocolError, match="mac is 65 bytes at offset 26, at most 64"):
        decode_request(payload + bytes(65))


def test_decoder_errors_are_precise() -> None:
    with pytest.raises(UnknownCommand) as unknown:
        decode_request(b"0001ZZ")
    assert (unknown.value.header, unknown.value.code) == ("0001", "ZZ")
    with pytest.raises(RemoteProtocolError, match="1 bytes after the last field"):
        decode_request(b"0001LK\x00")
    with pytest.raises(RemoteProtocolError, match="header"):
        decode_request(b"00\xff1LK")
    with pytest.raises(RemoteProtocolError, match="not a MAC algorithm"):
        decode_request(b"0001MA\x00\x01k\x00\x00\x00\x03MD5\x00\x00")
    with pytest.raises(RemoteProtocolError, match="leading zeros"):
        decode_request(b"0001RA\x00\x0208")
    with pytest.raises(RemoteProtocolError, match="error code '42' is not defined"):
        decode_reply(b"0001RB42\x00\x00")
    with pytest.raises(RemoteProtocolError, match="answers no command"):
        decode_reply(b"0001ZZ00")
    with pytest.raises(RemoteProtocolError, match="not UTF-8"):
        decode_reply(b"0001RB10\x00\x01\xff")


async def test_read_payload_refuses_bad_lengths() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"\x00\x00")
    with pytest.raises(RemoteProtocolError, match="length prefix 0"):
        await read_payload(reader)
    reader = asyncio.StreamReader()
    reader.feed_data(b"\x00\x06000" + b"1LK")
    assert await read_payload(reader) == b"0001LK"


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (KeyNotFound("x"), ErrorCode.key_not_found),
        (KeyTypeError("x"), ErrorCode.key_type),
        (DataLengthError("x"), ErrorCode.data_length),
        (DataFormatError("x"), ErrorCode.data_format),
        (PinBlockError("x"), ErrorCode.pin_block),
        (VerificationFailed("x"), ErrorCode.verification_failed),
        (UnknownCommand("x"), ErrorCode.command_unknown),
        (RemoteProtocolError("x"), ErrorCode.request_malformed),
        (ValueError("x"), ErrorCode.internal),
        (HsmError("x"), ErrorCode.internal),
    ],
)
def test_error_codes_map_to_the_soft_backends_classes(exc: Exception, error: ErrorCode) -> None:
    assert error_code_for(exc) is error
    back = exception_for(error, "why")
    assert type(back) is (RemoteInternalError if error is ErrorCode.internal else type(exc))
    assert "why" in str(back)


def test_limits_agree_with_the_soft_backend() -> None:
    assert RANDOM_MAX == RANDOM_BYTES_MAX


def test_repr_shows_no_values() -> None:
    block = bytes.fromhex("0412AC89ABCDEF67")
    request = Request(
        "0001", Command.translate_pin_format0, (KeyRef("a"), KeyRef("b"), block, "6212")
    )
    reply = Reply("0001", "CD", ErrorCode.ok, (block,))
    for shown in (repr(request), repr(reply)):
        assert block.hex() not in shown.lower() and "6212" not in shown


def test_clip_message_fits_the_message_field() -> None:
    clipped = clip_message("é" * 300 + "\n")
    assert len(clipped.encode()) <= 200 and "\n" not in clipped
    assert decode_reply(unframe(encode_reply(Reply("0001", "RB", ErrorCode.internal, (), clipped))))
