"""Programmer-error assertions that stay on under `python -O`.

`invariant(cond, msg)` is for states the code itself must never reach (a ledger entry
that does not balance, a state machine in an impossible state). Business outcomes are
result codes and operating errors are precise exceptions; neither goes through here.
`InvariantViolation` is never caught by our code: it crashes the request loudly and is
logged with the message.
"""

from typing import NoReturn


class InvariantViolation(AssertionError):
    """A broken invariant: a bug, not an input or operating error."""


def _fail(msg: str) -> NoReturn:
    raise InvariantViolation(msg)


def invariant(cond: object, msg: str) -> None:
    """Raise InvariantViolation(msg) unless `cond` is truthy. Not removed by -O."""
    if not cond:
        _fail(msg)
