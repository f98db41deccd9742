"""The sign-in a request claims (`sign_no`), checked against what the load found; and
the decisions of 9001 sign-in and 9002 sign-out — pure functions of the request, what
the engine loaded and the engine's clock.

Each `decide_*` is one straight list of early returns: the order of its refusals is the
order of its `if`s (the runner has answered a repeated msgid and, for 9002, checked the
envelope's sign-in before a decide function runs).
"""

from __future__ import annotations

import datetime as dt

from msgspec import Struct

from settlement.errors import DomainInvariantViolation
from settlement.lifecycle import SignInState, transition
from settlement.refusals import Refusal, Refused


class SignIn(Struct, frozen=True):
    """The sign-in row named by the request's sign_no at its institution."""

    opter: str
    signed_out: bool

    @property
    def state(self) -> SignInState:
        return SignInState.signed_out if self.signed_out else SignInState.open


def check_signed_in(sign_no: str, opter: str, found: SignIn | None) -> Refused | None:
    """Every call but 9001 carries the sign_no of an open sign-in of its operator."""
    if not sign_no:
        return Refused(Refusal.sign_in_required, "sign_no: required; sign in with 9001")
    if found is None:
        return Refused(Refusal.sign_no_unknown, f"sign_no: {sign_no} is not known here")
    if found.state is SignInState.signed_out:
        return Refused(Refusal.sign_no_signed_out, f"sign_no: {sign_no} is signed out")
    if found.opter != opter:
        return Refused(
            Refusal.operator_not_signed_in, f"opter: {opter} did not sign in as {sign_no}"
        )
    return None


# -- 9001 sign-in ---------------------------------------------------------------------------


class SignInRequest(Struct, frozen=True, kw_only=True):
    fixmedins_code: str  # the envelope's
    opter: str  # the envelope's
    opter_no: str  # input.signIn.opter_no


class SignInLoad(Struct, frozen=True):
    operator_known: bool  # `opter` is an operator of `fixmedins_code`
    sign_no_seq: int  # the next value of sign_no_seq


class SignInDecision(Struct, frozen=True):
    sign_no: str
    state: SignInState


def decide_sign_in(
    req: SignInRequest, load: SignInLoad, now: dt.datetime
) -> Refused | SignInDecision:
    """A registered operator signs in as themself; the sign_no is the engine's clock to
    the second and the sequence's next value (30 characters)."""
    if req.opter_no != req.opter:
        return Refused(Refusal.field_invalid, "input.signIn.opter_no: must equal opter")
    if not load.operator_known:
        return Refused(
            Refusal.operator_unknown,
            f"opter: {req.opter} is not an operator of {req.fixmedins_code}",
        )
    sign_no = f"{now:%Y%m%d%H%M%S}{load.sign_no_seq:016d}"
    return SignInDecision(sign_no=sign_no, state=SignInState.open)


# -- 9002 sign-out --------------------------------------------------------------------------


class SignOutRequest(Struct, frozen=True, kw_only=True):
    sign_no: str  # the envelope's: the sign-in this call is made under
    opter: str  # the envelope's
    input_sign_no: str  # input.signOut.sign_no
    input_opter_no: str  # input.signOut.opter_no


class SignOutLoad(Struct, frozen=True):
    sign_in: SignIn | None  # the envelope's sign-in, read again under its row lock


class SignOutDecision(Struct, frozen=True):
    sign_no: str
    state: SignInState


def decide_sign_out(req: SignOutRequest, load: SignOutLoad) -> Refused | SignOutDecision:
    """The open sign-in the call is made under is closed. It is checked again as the row
    lock found it: a concurrent sign-out of the same sign_no that committed first makes
    this one `sign_no_signed_out`."""
    found = load.sign_in
    bad = check_signed_in(req.sign_no, req.opter, found)
    if bad is not None:
        return bad
    if found is None:
        raise DomainInvariantViolation("check_signed_in let a missing sign-in through")
    if req.input_sign_no != req.sign_no:
        return Refused(Refusal.field_invalid, "input.signOut.sign_no: must equal sign_no")
    if req.input_opter_no != req.opter:
        return Refused(Refusal.field_invalid, "input.signOut.opter_no: must equal opter")
    state = transition(found.state, SignInState.signed_out)
    return SignOutDecision(sign_no=req.sign_no, state=state)
