"""The lifecycles of a sign-in, a visit and a settlement, as enums with guarded
transitions (after asyncpg's TransactionState).

States travel to SQL as parameters (their values), never as literals in queries; a
transition that the lifecycle does not allow is a programming error, raised as
`LifecycleError` — decide functions check the state first and refuse in business terms.
"""

from __future__ import annotations

import enum
from typing import TypeVar


class LifecycleError(Exception):
    """A transition the lifecycle does not allow was asked for (a bug, not input)."""


class SignInState(enum.StrEnum):
    open = "open"
    signed_out = "signed_out"


class VisitState(enum.StrEnum):
    registered = "registered"
    cancelled = "cancelled"


class SettlementState(enum.StrEnum):
    settled = "settled"
    cancelled = "cancelled"


_ALLOWED: dict[type[enum.StrEnum], frozenset[tuple[str, str]]] = {
    SignInState: frozenset({("open", "signed_out")}),
    VisitState: frozenset({("registered", "cancelled")}),
    # cancelled → settled: a 2601 of the cancellation puts the settlement back.
    SettlementState: frozenset({("settled", "cancelled"), ("cancelled", "settled")}),
}


S = TypeVar("S", SignInState, VisitState, SettlementState)


def transition(current: S, target: S) -> S:
    """`target`, if the lifecycle of `current` allows going there; else LifecycleError."""
    if (current.value, target.value) not in _ALLOWED[type(current)]:
        raise LifecycleError(f"{type(current).__name__}: {current} -> {target} is not allowed")
    return target
