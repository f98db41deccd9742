"""TR-31 / ANSI X9.143 key block headers: parsing, encoding and field checks.

Header strings after knovichikhin/psec tests/test_tr31.py (test_header_load_*,
test_header_block_load_exceptions, test_header_load_exceptions); our parser must read
the same fields, strip and re-add the padding block the same way, and name the failing
field and its position in every `KeyBlockError`.
"""

from __future__ import annotations

import pytest

from hsm.errors import KeyBlockError
from hsm.tr31_header import ALGORITHMS, KeyBlockHeader, parse_header


def test_header_with_one_optional_block_parses_like_psec() -> None:
    """psec test_header_load_optional."""
    header, length = parse_header("B0000P0TE00N0100KS1800604B120F9292800000xxxxxxxx")
    assert length == 40
    assert header.optional_blocks == (("KS", "00604B120F9292800000"),)
    assert (header.key_usage, header.algorithm, header.mode_of_use) == ("P0", "T", "E")


def test_padding_block_is_removed_on_parse_and_added_on_encode() -> None:
    """psec test_header_load_optional_padded: the same header text both ways."""
    header, length = parse_header("B0000P0TE00N0200KS1200604B120F9292PB0600")
    assert length == 40 and header.optional_blocks == (("KS", "00604B120F9292"),)
    assert header.encode(body_chars=0) == "B0040P0TE00N0200KS1200604B120F9292PB0600"


def test_extended_optional_block_lengths_parse_like_psec() -> None:
    """psec test_header_load_optional_extended_length and test_header_load_optional_256."""
    header, length = parse_header("B0000P0TE00N0200KS00011600604B120F9292PB0A000000")
    assert length == 48 and header.optional_blocks == (("KS", "00604B120F9292"),)
    long_text = "B0000P0TE00N0200KS0002010A" + "P" * 256 + "PB0600"
    header, length = parse_header(long_text)
    assert length == 288 and header.optional_blocks == (("KS", "P" * 256),)
    assert header.encode(body_chars=0) == "B0288" + long_text[5:]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("B0000P0TE00N0100", "optional block 1 of 1 \\(position 16\\): ID ''"),
        ("B0000P0TE00N0100KS1Y", "KS: length '1Y' is not 2 hex digits"),
        ("B0000P0TE00N0100KS02", "KS: length 2 does not fit"),
        ("B0000P0TE00N0100KS071", "KS: length 7 does not fit"),
        ("B0000P0TE00N0100KS0000", "KS: extended length-of-length '00' is invalid"),
        ("B0000P0TE00N0100KS00010H", "extended length '0H' is not 2 hex digits"),
        ("B0000P0TE00N0100**04", "ID '\\*\\*' is not two letters or digits"),
        ("B0000P0TE00N0100KS05\x03", "KS: data is not printable ASCII"),
        ("B0000P0TE00N0X00", "number of optional blocks \\(position 12\\) '0X'"),
        ("B0000P0TE00N0001", "reserved field \\(position 14\\) is '01'"),
        ("B0000P_TE00N0000", "key usage \\(position 5\\) 'P_'"),
        ("B0000Z9TE00N0000", "key usage \\(position 5\\) 'Z9' is not defined"),
        ("B0000P0QE00N0000", "algorithm \\(position 7\\) 'Q'"),
        ("B0000P0TQ00N0000", "mode of use \\(position 8\\) 'Q'"),
        ("B0000P0TE0_N0000", "key version \\(position 9\\) '0_'"),
        ("B0000P0TE00Q0000", "exportability \\(position 11\\) 'Q'"),
        ("B0000P0TE00N0100KS06AB", "header is 22 characters, not a multiple of the 8-byte"),
        ("B0000P0TE00N0200PB080000KS04", "padding block PB must be the last"),
        ("X0000P0TE00N0000", "version \\(position 0\\) 'X' is not B or D"),
        ("A0000P0TE00N0000", "version A \\(variant binding\\) is not supported"),
    ],
)
def test_malformed_headers_name_the_failing_field(text: str, message: str) -> None:
    """Inputs after psec test_header_block_load_exceptions / test_header_load_exceptions."""
    with pytest.raises(KeyBlockError, match=message):
        parse_header(text)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"version": "A"}, "version A \\(variant binding\\) is not supported"),
        ({"key_usage": "XX"}, "key usage \\(position 5\\) 'XX'"),
        ({"algorithm": "Q"}, "algorithm \\(position 7\\) 'Q'"),
        ({"mode_of_use": "Q"}, "mode of use \\(position 8\\) 'Q'"),
        ({"key_version": "1"}, "key version \\(position 9\\) '1'"),
        ({"exportability": "Y"}, "exportability \\(position 11\\) 'Y'"),
        ({"optional_blocks": (("PB", "00"),)}, "'PB' is reserved for padding"),
        ({"optional_blocks": (("K$", "00"),)}, "ID 'K\\$' is not two letters"),
        ({"optional_blocks": (("KS", "\t"),)}, "KS data is not printable ASCII"),
    ],
)
def test_header_fields_are_checked_at_construction(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "version": "B",
        "key_usage": "P0",
        "algorithm": "T",
        "mode_of_use": "E",
    }
    fields.update(kwargs)
    with pytest.raises(KeyBlockError, match=message):
        KeyBlockHeader(**fields)  # type: ignore[arg-type]


def test_optional_blocks_given_as_lists_compare_equal_to_tuples() -> None:
    as_lists = KeyBlockHeader("B", "P0", "T", "E", optional_blocks=[["KS", "0060"]])  # type: ignore[arg-type]
    assert as_lists == KeyBlockHeader("B", "P0", "T", "E", optional_blocks=(("KS", "0060"),))


def test_all_header_algorithm_codes_are_known() -> None:
    assert set(ALGORITHMS) == set("ADEHRST")
