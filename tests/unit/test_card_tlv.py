"""BER-TLV: published EMV structures parse, encode/parse round-trips, and any byte
string parses or raises TlvError within the limits."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from card.tlv import Tlv, TlvError, encode, parse, parse_simple


def test_fci_of_a_payment_application() -> None:
    """FCI template 6F with DF name 84 and proprietary template A5 (EMV Book 1 §11.3)."""
    fci = bytes.fromhex("6F1A8407A0000003330101A50F500A50424F43204465626974870101")
    (root,) = parse(fci)
    assert root.tag == 0x6F and root.constructed
    df_name = root.find(0x84)
    assert df_name is not None and df_name.value == bytes.fromhex("A0000003330101")
    label = root.find(0x50)
    assert label is not None and label.value == b"PBOC Debit"
    assert encode(root) == fci


def test_two_byte_tags_and_long_lengths() -> None:
    obj = Tlv(0x9F36, b"\x00\x42")
    assert encode(obj) == bytes.fromhex("9F36020042")
    big = Tlv(0x70, children=(Tlv(0x5A, b"\x62" * 200),))
    raw = encode(big)
    assert raw[:4] == bytes.fromhex("7081CB5A") and parse(raw)[0].children[0].value == b"\x62" * 200


def test_ssse_algorithm_id_from_the_fci_proprietary_data() -> None:
    """DOMAIN.md §3.2: 9F0C 03 86 01 XX carries the algorithm identifier."""
    (obj,) = parse(bytes.fromhex("9F0C03860104"))
    assert obj.tag == 0x9F0C and obj.value == bytes.fromhex("860104")


def test_simple_records() -> None:
    assert parse_simple(bytes.fromhex("0103333030" + "0704" + "41424344")) == {
        1: b"300",
        7: b"ABCD",
    }
    with pytest.raises(TlvError, match="runs past the end"):
        parse_simple(bytes.fromhex("0105AA"))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("9F", "truncated multi-byte tag"),
        ("5A05AABB", "runs past the end"),
        ("5A84FFFFFFFF", "not supported"),
        ("DFFFFF7F00", "longer than 3 bytes"),
        ("70" * 1, "length expected"),
    ],
)
def test_malformed_tlv_is_refused_with_where(raw: str, message: str) -> None:
    with pytest.raises(TlvError, match=message):
        parse(bytes.fromhex(raw))


def test_nesting_is_bounded() -> None:
    obj = Tlv(0x5A, b"x")
    for _ in range(12):
        obj = Tlv(0x70, children=(obj,))
    with pytest.raises(TlvError, match="nesting deeper"):
        parse(encode(obj))


primitive = st.builds(
    Tlv, st.sampled_from([0x5A, 0x84, 0x9F36, 0x9F37, 0x50, 0xDF8101]), st.binary(max_size=300)
)
trees = st.recursive(
    primitive,
    lambda kids: st.builds(
        lambda t, c: Tlv(t, encode_children(c), tuple(c)),
        st.sampled_from([0x70, 0x6F, 0xA5, 0xBF0C]),
        st.lists(kids, min_size=1, max_size=3),
    ),
    max_leaves=8,
)


def encode_children(children: list[Tlv]) -> bytes:
    return b"".join(encode(c) for c in children)


@given(trees)
@settings(max_examples=300)
def test_round_trip(obj: Tlv) -> None:
    (parsed,) = parse(encode(obj))
    assert encode(parsed) == encode(obj)


@given(st.binary(max_size=400))
@settings(max_examples=2000)
def test_any_bytes_parse_or_raise_tlv_error(raw: bytes) -> None:
    with contextlib.suppress(TlvError):
        parse(raw)
    with contextlib.suppress(TlvError):
        parse_simple(raw)
