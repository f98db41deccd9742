"""Money conversions are exact and refuse, naming the field, anything that is not an
amount of yuan with at most 2 decimals; shares are half-up to the fen in integers."""

from __future__ import annotations

import decimal
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.errors import DomainInvariantViolation
from settlement.money import (
    AMOUNT_FEN_MAX,
    MoneyError,
    bp_to_percent_text,
    fen_to_yuan,
    ratio_of,
    round_half_up,
    scaled_int,
    yuan_to_fen,
)

D = decimal.Decimal


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("0", 0),
        ("0.00", 0),
        ("-0", 0),
        ("0.01", 1),
        ("1.5", 150),
        ("1.50", 150),
        ("1.500", 150),  # trailing zeros are not a third decimal
        ("1E+2", 10_000),
        ("12345.67", 1_234_567),
        ("100000000000", AMOUNT_FEN_MAX),  # the limit itself is accepted
        ("0E+999999999", 0),
    ],
)
def test_yuan_to_fen_is_exact(text: str, fen: int) -> None:
    """Every spelling of an exact 2-decimal amount converts to the same fen."""
    assert yuan_to_fen(D(text), "x") == fen


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1.005", "at most 2 decimal places"),
        ("0.001", "at most 2 decimal places"),
        ("1E-999999999", "at most 2 decimal places"),
        ("-0.01", "must not be negative"),
        ("NaN", "must be a finite number"),
        ("sNaN", "must be a finite number"),
        ("Infinity", "must be a finite number"),
        ("-Infinity", "must be a finite number"),
        ("100000000000.01", "must not exceed 100000000000.00"),
        ("1E+12", "must not exceed"),
        ("-1E+12", "must not exceed"),
    ],
)
def test_bad_amounts_are_refused_naming_the_field(text: str, reason: str) -> None:
    """The error carries the field and a reason the edge can show as is."""
    with pytest.raises(MoneyError) as info:
        yuan_to_fen(D(text), "data.medfee_sumamt")
    assert info.value.field == "data.medfee_sumamt"
    assert reason in info.value.reason
    assert str(info.value) == f"data.medfee_sumamt: {info.value.reason}"
    assert isinstance(info.value, ValueError)


def test_negative_amounts_only_where_allowed() -> None:
    """Refunds may be negative when the caller says so; the limit still applies."""
    assert yuan_to_fen(D("-12.30"), "refund", allow_negative=True) == -1230
    with pytest.raises(MoneyError, match="must not exceed"):
        yuan_to_fen(D("-100000000000.01"), "refund", allow_negative=True)


def test_huge_exponents_and_long_zero_tails_are_cheap() -> None:
    """An exponent of 10^9 or a million trailing zeros neither hangs nor blows up int()."""
    started = time.monotonic()
    with pytest.raises(MoneyError, match="must not exceed"):
        yuan_to_fen(D("9E+999999999"), "x")
    with pytest.raises(MoneyError, match="decimal places"):
        yuan_to_fen(D("1E-999999999"), "x")
    assert yuan_to_fen(D("7." + "0" * 1_000_000), "x") == 700
    with pytest.raises(MoneyError, match="decimal places"):
        yuan_to_fen(D("7." + "0" * 1_000_000 + "1"), "x")
    assert time.monotonic() - started < 2


def test_conversion_ignores_the_callers_decimal_context() -> None:
    """A low precision or trapping context cannot round or break a conversion."""
    with decimal.localcontext() as ctx:
        ctx.prec = 3
        ctx.traps[decimal.Inexact] = True
        assert yuan_to_fen(D("12345.67"), "x") == 1_234_567
        assert fen_to_yuan(1_234_567) == D("12345.67")


@pytest.mark.parametrize(
    ("fen", "text"),
    [(0, "0.00"), (1, "0.01"), (150, "1.50"), (-5, "-0.05"), (10**40, "1" + "0" * 38 + ".00")],
)
def test_fen_to_yuan_has_exactly_two_decimals(fen: int, text: str) -> None:
    """fen_to_yuan is exact for any int and always carries two decimal places."""
    yuan = fen_to_yuan(fen)
    assert str(yuan) == text
    assert yuan.as_tuple().exponent == -2


@given(st.integers(-AMOUNT_FEN_MAX, AMOUNT_FEN_MAX))
@settings(max_examples=300, deadline=None)
def test_fen_yuan_round_trip(fen: int) -> None:
    """fen -> yuan -> fen is the identity over the whole accepted range."""
    assert yuan_to_fen(fen_to_yuan(fen), "x", allow_negative=True) == fen


def test_scaled_int_serves_quantities_and_unit_prices() -> None:
    """The wire's 4-decimal quantities and 6-decimal prices convert the same way."""
    assert scaled_int(D("1.5"), 4, "cnt", limit=10**16) == 15_000
    assert scaled_int(D("3.333333"), 6, "pric", limit=10**18) == 3_333_333
    with pytest.raises(MoneyError, match="at most 4 decimal places"):
        scaled_int(D("0.00001"), 4, "cnt", limit=10**16)
    with pytest.raises(MoneyError, match="must not exceed"):
        scaled_int(D("2"), 0, "n", limit=1)


@pytest.mark.parametrize(
    ("amount", "bp", "share"),
    [
        (5, 5000, 3),  # 2.5 -> 3: half goes up
        (3, 5000, 2),  # 1.5 -> 2
        (1, 4999, 0),  # 0.4999 -> 0
        (1, 5000, 1),  # 0.5 -> 1
        (1, 5001, 1),
        (100, 3333, 33),
        (10_000, 8500, 8500),
        (1_690_000, 8500, 1_436_500),  # DOMAIN.md §4.9: 16 900.00 × 85 %
        (7, 0, 0),
        (7, 10_000, 7),
        (0, 10_000, 0),
    ],
)
def test_ratio_is_half_up_to_the_fen(amount: int, bp: int, share: int) -> None:
    assert ratio_of(amount, bp) == share


@pytest.mark.parametrize(("amount", "bp"), [(-1, 5000), (100, -1), (100, 10_001)])
def test_ratio_outside_its_domain_is_a_programmer_error(amount: int, bp: int) -> None:
    """A negative amount or a ratio outside 0..100 % is a bug, not bad input."""
    with pytest.raises(DomainInvariantViolation):
        ratio_of(amount, bp)


def test_round_half_up() -> None:
    """Exact quotients stay, halves go up, the rest goes to the nearer integer."""
    assert [round_half_up(n, 4) for n in range(9)] == [0, 0, 1, 1, 1, 1, 2, 2, 2]
    with pytest.raises(DomainInvariantViolation):
        round_half_up(1, 0)


def test_percent_text_is_exact() -> None:
    assert [bp_to_percent_text(bp) for bp in (8500, 5, 10_000, 0)] == [
        "85.00%",
        "0.05%",
        "100.00%",
        "0.00%",
    ]


def test_domain_checks_stay_on_under_optimisation() -> None:
    """Like engine.invariant, settlement's checks survive `python -O`."""
    code = "from settlement.money import ratio_of\nratio_of(-1, 1)"
    result = subprocess.run(
        [sys.executable, "-O", "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert "DomainInvariantViolation" in result.stderr
