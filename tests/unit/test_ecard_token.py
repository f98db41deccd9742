"""The e-card QR token codec (card.ecard; 1101 carries the token, see
terminals.messages.card.person_info): what is encoded decodes to the same payload and
signature, the signature covers the version and payload exactly as sent, and anything
else — truncated, re-encoded, over-long, wrong version, bad JSON, not a DER signature —
is an `EcardTokenError` naming the part, never another exception. The signing runs through the real soft HSM (simulators.ecard)."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given
from hypothesis import strategies as st

from card.ecard import (
    ECARD_QR_CHARS_MAX,
    EcardPayload,
    EcardTokenError,
    decode_ecard_token,
    ecard_signing_input,
    encode_ecard_token,
)
from hsm.keystore import KeyStore
from hsm.protocol import KeyRef
from hsm.soft import SoftHsm
from hsm.soft_admin import demo_hierarchy
from simulators.ecard import EcardPlatform
from simulators.population import Person

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
SIGNATURE = encode_dss_signature(12345, 67890)
PAYLOAD = EcardPayload(
    token_id="0123456789ABCDEF0123456789ABCDEF",
    certno="510104199001011234",
    psn_name="王小明",
    insuplc_admdvs="510100",
    iat=1_800_000_000,
    exp=1_800_000_060,
)
PERSON = Person(
    psn_no="510100000000000001",
    insuplc_admdvs="510100",
    certno="510104199001011234",
    psn_name="王小明",
    gend="1",
    brdy=dt.date(1990, 1, 1),
    insutype="310",
    retired=False,
    psn_insu_date=dt.date(2012, 1, 1),
    emp_name="单位001",
    acct_balance_fen=0,
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


payloads = st.builds(
    EcardPayload,
    token_id=st.text("ABCDEFabcdef0123456789xyzXYZ", min_size=16, max_size=40),
    certno=st.text(min_size=1, max_size=50),
    psn_name=st.text(min_size=1, max_size=12),
    insuplc_admdvs=st.from_regex(r"^[0-9]{6}$", fullmatch=True),
    iat=st.integers(0, 2**39),
    exp=st.just(0),
).map(lambda p: msgspec.structs.replace(p, exp=p.iat + 60))
signatures = st.builds(
    encode_dss_signature, st.integers(1, P256_ORDER - 1), st.integers(1, P256_ORDER - 1)
)


@given(payloads, signatures)
def test_round_trip_keeps_payload_signature_and_signed_text(
    payload: EcardPayload, signature: bytes
) -> None:
    text = encode_ecard_token(payload, signature)
    token = decode_ecard_token(text)
    assert token.payload == payload
    assert token.signature == signature
    assert token.signed_part == ecard_signing_input(payload)
    assert text.startswith("YKEC1.") and len(text) <= ECARD_QR_CHARS_MAX


@given(st.text(max_size=600))
def test_arbitrary_text_is_a_token_error_or_a_token(text: str) -> None:
    with contextlib.suppress(EcardTokenError):
        decode_ecard_token(text)


@given(st.binary(max_size=300), st.binary(max_size=80))
def test_any_bytes_in_token_form_are_a_token_error_or_a_token(
    payload: bytes, signature: bytes
) -> None:
    """Past the version and the base64url: arbitrary JSON, UTF-8 and DER content."""
    with contextlib.suppress(EcardTokenError):
        decode_ecard_token(f"YKEC1.{b64(payload)}.{b64(signature)}")


@given(st.integers(0, 200), st.sampled_from("AZaz09-_.="))
def test_any_one_character_change_is_refused_or_changes_what_is_signed(
    position: int, replacement: str
) -> None:
    """A changed token either fails to parse or has a different signed part or
    signature, so the signature check downstream catches it."""
    text = encode_ecard_token(PAYLOAD, SIGNATURE)
    position %= len(text)
    changed = text[:position] + replacement + text[position + 1 :]
    if changed == text:
        return
    try:
        token = decode_ecard_token(changed)
    except EcardTokenError:
        return
    assert (token.signed_part, token.signature) != (
        ecard_signing_input(PAYLOAD),
        SIGNATURE,
    )


def good_parts() -> list[str]:
    return encode_ecard_token(PAYLOAD, SIGNATURE).split(".")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "three dot-separated parts"),
        ("YKEC1.abc", "three dot-separated parts"),
        ("YKEC2." + ".".join(good_parts()[1:]), "version: expected YKEC1"),
        ("YKEC1.a+b/." + good_parts()[2], "payload: not base64url"),
        ("YKEC1." + good_parts()[1] + "=." + good_parts()[2], "payload: not base64url"),
        ("YKEC1.AB." + good_parts()[2], "payload: not canonical base64url"),
        ("YKEC1." + b64(b"{}") + "." + good_parts()[2], "payload: "),
        ("YKEC1." + b64(b"not json") + "." + good_parts()[2], "payload: not a UTF-8 JSON array"),
        ("YKEC1." + b64(b'["\xff"]') + "." + good_parts()[2], "payload: not a UTF-8 JSON array"),
        (
            "YKEC1." + b64(b'["0123456789ABCDEF","c","n","510100",10,10]') + "." + good_parts()[2],
            "payload: exp must be after iat",
        ),
        (
            "YKEC1." + b64(b'["short","c","n","510100",10,70]') + "." + good_parts()[2],
            "payload: ",
        ),
        (
            "YKEC1."
            + b64(b'["0123456789ABCDEF","c","n","510100",10,70,"extra"]')
            + "."
            + good_parts()[2],
            "payload: ",
        ),
        ("YKEC1." + good_parts()[1] + "." + b64(b"\x30" * 4), "signature: not a DER ECDSA"),
        ("YKEC1." + good_parts()[1] + "." + b64(b"\x31" + bytes(20)), "signature: not a DER"),
        ("YKEC1." + good_parts()[1] + ".A" * 300, "longer than 512"),
    ],
)
def test_malformed_tokens_name_the_wrong_part(text: str, message: str) -> None:
    with pytest.raises(EcardTokenError, match=message.replace("+", r"\+")):
        decode_ecard_token(text)


def test_error_messages_do_not_carry_the_persons_data() -> None:
    bad = msgspec.json.encode(["0123456789ABCDEF", "510104199001011234", "王小明", "5101", 1, 2])
    with pytest.raises(EcardTokenError) as err:
        decode_ecard_token("YKEC1." + b64(bad) + "." + good_parts()[2])
    assert "510104199001011234" not in str(err.value) and "王" not in str(err.value)


def test_encoding_refuses_what_could_not_be_decoded() -> None:
    with pytest.raises(EcardTokenError, match="exp must be after iat"):
        ecard_signing_input(msgspec.structs.replace(PAYLOAD, exp=PAYLOAD.iat))
    with pytest.raises(EcardTokenError, match="signature"):
        encode_ecard_token(PAYLOAD, b"\x30\x00")


def test_repr_hides_the_persons_data() -> None:
    shown = repr(decode_ecard_token(encode_ecard_token(PAYLOAD, SIGNATURE)))
    assert PAYLOAD.certno not in shown and PAYLOAD.psn_name not in shown
    assert PAYLOAD.token_id not in shown


async def test_platform_token_verifies_under_its_key_and_not_under_another() -> None:
    """Issued through the soft HSM's `sign`: the engine's check (verify_signature over
    the signed part) accepts it under the platform's key and refuses it under a
    different platform key of the same kind."""
    hsm = SoftHsm(KeyStore(demo_hierarchy()))
    other = SoftHsm(KeyStore(demo_hierarchy()))
    platform = EcardPlatform(hsm, clock=lambda: 1_800_000_000.0)
    issued = await platform.issue(PERSON)
    token = decode_ecard_token(issued.qr)
    assert token.payload == issued.payload
    assert token.payload.token_id == issued.token_id and len(issued.token_id) <= 40
    assert (token.payload.iat, token.payload.exp) == (1_800_000_000, 1_800_000_060)
    key = KeyRef("ecard.sign")
    assert await hsm.verify_signature(key, token.signed_part, token.signature, deadline_s=1)
    assert not await other.verify_signature(key, token.signed_part, token.signature, deadline_s=1)
    second = await platform.issue(PERSON)
    assert second.token_id != issued.token_id
