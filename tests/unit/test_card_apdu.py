"""APDU codec: the four ISO 7816-4 cases in short and extended form round-trip, the
short form is chosen whenever it fits, and any byte string either decodes or raises
ApduError — never anything else."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from card.apdu import ApduError, CommandApdu, ResponseApdu, StatusWord, status_name

SELECT_SSSE = bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF")  # DOMAIN.md §3.2


def test_select_ssse_is_a_short_case_3() -> None:
    apdu = CommandApdu.decode(SELECT_SSSE)
    assert (apdu.cla, apdu.ins, apdu.p1, apdu.p2, apdu.le) == (0x00, 0xA4, 0x04, 0x00, None)
    assert apdu.data.startswith(b"sx1.sh.") and apdu.encode() == SELECT_SSSE


@pytest.mark.parametrize(
    ("hex_apdu", "data_len", "le"),
    [
        ("0084000008", 0, 8),  # GET CHALLENGE, case 2
        ("00B2010400", 0, 256),  # READ RECORD, Le 00 = 256
        ("0088000010" + "00" * 16 + "08", 16, 8),  # INTERNAL AUTHENTICATE, case 4
        ("00A4040000", 0, 256),
        ("00B0000000" + "0000", 0, 65_536),  # extended case 2
    ],
)
def test_known_commands(hex_apdu: str, data_len: int, le: int | None) -> None:
    apdu = CommandApdu.decode(bytes.fromhex(hex_apdu))
    assert (len(apdu.data), apdu.le) == (data_len, le)


commands = st.builds(
    CommandApdu,
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=600),
    st.one_of(st.none(), st.integers(1, 65_536)),
)


@given(commands)
@settings(max_examples=400)
def test_commands_round_trip(apdu: CommandApdu) -> None:
    raw = apdu.encode()
    assert CommandApdu.decode(raw) == apdu
    if len(apdu.data) <= 255 and (apdu.le is None or apdu.le <= 256):
        assert len(raw) <= 4 + 1 + 255 + 1, "short form when it fits"


@given(st.binary(max_size=700))
@settings(max_examples=2000)
def test_any_bytes_decode_or_raise_apdu_error(raw: bytes) -> None:
    for decoder in (CommandApdu.decode, ResponseApdu.decode):
        with contextlib.suppress(ApduError):
            decoder(raw)


def test_bad_fields_are_refused() -> None:
    with pytest.raises(ApduError, match="cla must be one byte"):
        CommandApdu(256, 0, 0, 0)
    with pytest.raises(ApduError, match="Le must be"):
        CommandApdu(0, 0, 0, 0, le=0)
    with pytest.raises(ApduError, match="does not match"):
        CommandApdu.decode(bytes.fromhex("00A4040005AABB"))


def test_status_words_have_names() -> None:
    assert ResponseApdu.decode(bytes.fromhex("9000")).ok
    assert ResponseApdu(b"", 0x6A82).status == "file_not_found"
    assert status_name(0x63C2) == "verify_failed_2_tries_left"
    assert status_name(0x6983) == StatusWord.authentication_method_blocked.name
    assert status_name(0x6C10) == "wrong_le_exact_16" and status_name(0x1234) == "sw_1234"
