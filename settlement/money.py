"""Money: integer fen inside, yuan with at most 2 decimals on the wire (DESIGN.md §6).

Conversion is exact (Decimal in, int out, never float). Ratios are integer basis
points; the one rounding rule is half-up to the fen on each share, the remainder
going to the patient (the caller subtracts the rounded share from the whole).
"""

from __future__ import annotations

import decimal

from settlement.errors import check

# Largest amount accepted on the wire: 10^11 yuan, far above any real bill, small
# enough that sums of thousands of lines stay exact in bigint.
AMOUNT_FEN_MAX = 10**13
BP_ONE = 10_000  # 100 % in basis points
_CENT = decimal.Decimal("0.01")


class MoneyError(ValueError):
    """An amount that cannot be money; `field` names where it came from."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def yuan_to_fen(value: decimal.Decimal, field: str, *, allow_negative: bool = False) -> int:
    """Exact yuan -> fen; refuses NaN/infinity, a third decimal, negatives, huge values."""
    if not value.is_finite():
        raise MoneyError(field, "must be a finite number")
    if abs(value) > decimal.Decimal(AMOUNT_FEN_MAX) / 100:
        raise MoneyError(field, f"must not exceed {AMOUNT_FEN_MAX // 100} yuan")
    exact = value.quantize(_CENT)
    if exact != value:
        raise MoneyError(field, "at most 2 decimal places")
    if exact < 0 and not allow_negative:
        raise MoneyError(field, "must not be negative")
    return int(exact.scaleb(2))


def fen_to_yuan(fen: int) -> decimal.Decimal:
    """fen -> yuan with exactly 2 decimals."""
    return (decimal.Decimal(fen) / 100).quantize(_CENT)


def round_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half-up, for numerator >= 0 < denominator."""
    check(numerator >= 0 and denominator > 0, "round_half_up takes a non-negative fraction")
    return (2 * numerator + denominator) // (2 * denominator)


def ratio_of(amount_fen: int, ratio_bp: int) -> int:
    """amount × ratio, half-up to the fen."""
    check(amount_fen >= 0, f"ratio_of: negative amount {amount_fen}")
    check(0 <= ratio_bp <= BP_ONE, f"ratio_of: ratio {ratio_bp} bp outside 0..10000")
    return round_half_up(amount_fen * ratio_bp, BP_ONE)
