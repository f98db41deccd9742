"""Money: integer fen inside, yuan with at most 2 decimals on the wire (DESIGN.md §6).

Invariants kept here:

* Conversion is exact: a Decimal goes in, an int comes out, and no float or decimal
  context takes part (a caller's `decimal.localcontext` cannot change the result, and
  an exponent such as `1E+999999999` is refused before any big power is computed).
* Every amount refused names its field (`MoneyError.field`), so the edge can answer
  "data.medfee_sumamt: at most 2 decimal places" without guessing.
* Ratios are integer basis points; the one rounding rule is half-up to the fen on each
  share, the remainder going to the patient (the caller subtracts the rounded share
  from the whole, so the parts always add up).
"""

from __future__ import annotations

import decimal

from settlement.errors import DomainInvariantViolation, check

# Largest amount accepted, in fen (10^11 yuan): far above any real bill or fund, small
# enough that sums of thousands of lines stay exact and fit PostgreSQL's bigint.
AMOUNT_FEN_MAX = 10**13
BP_ONE = 10_000  # 100 % in basis points


class MoneyError(ValueError):
    """An amount that cannot be money; `field` names where it came from."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def scaled_int(
    value: decimal.Decimal, places: int, field: str, *, limit: int, allow_negative: bool = False
) -> int:
    """`value` × 10^places as an exact int, or MoneyError naming `field`.

    Refuses NaN/infinity, more than `places` decimals (trailing zeros do not count:
    1.50 and 1.500 are both 1.5), a magnitude above `limit` (in the scaled unit) and,
    unless `allow_negative`, a negative value. -0 is 0.
    """
    check(places >= 0 and limit >= 0, "scaled_int: places and limit must be non-negative")
    if not value.is_finite():
        raise MoneyError(field, "must be a finite number")
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):  # only NaN and infinity have 'n'/'N'/'F' here
        raise DomainInvariantViolation(f"scaled_int: finite {value!r} has no int exponent")
    # Trailing zeros carry no value (1.500 == 1.5); dropping them first keeps every
    # int() and power of ten below small, whatever the sender wrote ("1.000…0", 1E+9999).
    kept = len(digits)
    while kept > 0 and digits[kept - 1] == 0:
        kept -= 1
    if kept == 0:
        return 0
    exponent += len(digits) - kept
    leading = exponent + kept - 1 + places  # power of ten of the leading digit, scaled
    if leading >= len(str(limit)):
        raise MoneyError(field, _too_large(limit, places))
    if exponent + places < 0:
        raise MoneyError(field, f"at most {places} decimal places")
    scaled: int = int("".join(map(str, digits[:kept]))) * 10 ** (exponent + places)
    if scaled > limit:
        raise MoneyError(field, _too_large(limit, places))
    if sign and not allow_negative:
        raise MoneyError(field, "must not be negative")
    return -scaled if sign else scaled


def _too_large(limit: int, places: int) -> str:
    return f"must not exceed {_scaled_to_decimal(limit, places)}"


def yuan_to_fen(value: decimal.Decimal, field: str, *, allow_negative: bool = False) -> int:
    """Exact yuan -> fen; refuses NaN/infinity, a third decimal, negatives, huge values."""
    return scaled_int(value, 2, field, limit=AMOUNT_FEN_MAX, allow_negative=allow_negative)


def _scaled_to_decimal(scaled: int, places: int) -> decimal.Decimal:
    # Built from the digit tuple: exact whatever the size and the current context.
    digits = tuple(int(c) for c in str(abs(scaled)))
    return decimal.Decimal((1 if scaled < 0 else 0, digits, -places))


def fen_to_yuan(fen: int) -> decimal.Decimal:
    """fen -> yuan with exactly 2 decimals (150 -> Decimal("1.50")), exact for any int."""
    return _scaled_to_decimal(fen, 2)


def bp_to_percent_text(ratio_bp: int) -> str:
    """8500 -> "85.00%", for human-readable texts (no float involved)."""
    return f"{_scaled_to_decimal(ratio_bp, 2)}%"


def round_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half-up, for numerator >= 0 and denominator > 0."""
    check(numerator >= 0 and denominator > 0, "round_half_up takes a non-negative fraction")
    return (2 * numerator + denominator) // (2 * denominator)


def ratio_of(amount_fen: int, ratio_bp: int) -> int:
    """amount × ratio, half-up to the fen (5 fen × 50 % = 3 fen)."""
    check(amount_fen >= 0, f"ratio_of: negative amount {amount_fen}")
    check(0 <= ratio_bp <= BP_ONE, f"ratio_of: ratio {ratio_bp} bp outside 0..10000")
    return round_half_up(amount_fen * ratio_bp, BP_ONE)
