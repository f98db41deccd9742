"""Errors of the domain layer. `settlement` imports nothing of `engine`, so it has its
own invariant exception; like engine.invariant's, it marks a bug, never bad input."""


class DomainInvariantViolation(AssertionError):
    """A broken domain invariant (an unbalanced entry, a broken money identity)."""


def check(cond: object, msg: str) -> None:
    """Raise DomainInvariantViolation(msg) unless `cond`; not removed by -O."""
    if not cond:
        raise DomainInvariantViolation(msg)
