"""The 9001 sign-in and 9002 sign-out decide functions without a database: what the load
would have found goes in as Structs, and out comes a refusal in the documented order
(naming its field) or a decision — the sign_no built from the engine's clock and the
sequence, the sign-in moved open → signed_out."""

from __future__ import annotations

import datetime as dt

import pytest

from engine.txn.refusal_codes import REFUSAL_CODES
from settlement.lifecycle import LifecycleError, SignInState, transition
from settlement.refusals import Refusal, Refused
from settlement.session import (
    SignIn,
    SignInLoad,
    SignInRequest,
    SignOutLoad,
    SignOutRequest,
    decide_sign_in,
    decide_sign_out,
)
from terminals.results import ResultCode

NOW = dt.datetime(2026, 6, 1, 8, 30, 5, tzinfo=dt.timezone(dt.timedelta(hours=8)))
HOSPITAL = "H51010000001"
SIGN_NO = "20260601080000" + "0000000000000041"  # as 9001 numbered it


def refusal(got: object) -> Refused:
    assert isinstance(got, Refused), got
    return got


# -- 9001 ---------------------------------------------------------------------------------


def sign_in_request(opter_no: str = "OP1") -> SignInRequest:
    return SignInRequest(fixmedins_code=HOSPITAL, opter="OP1", opter_no=opter_no)


def test_sign_in_of_a_registered_operator_numbers_the_session_from_the_clock() -> None:
    got = decide_sign_in(sign_in_request(), SignInLoad(operator_known=True, sign_no_seq=42), NOW)
    assert not isinstance(got, Refused)
    assert got.sign_no == "20260601083005" + "0000000000000042"
    assert len(got.sign_no) == 30  # the wire's sign_no is at most 30 characters
    assert got.state is SignInState.open


def test_sign_in_refuses_an_opter_no_other_than_the_envelopes_opter_first() -> None:
    got = refusal(decide_sign_in(sign_in_request("OP2"), SignInLoad(False, 42), NOW))
    assert got.reason is Refusal.field_invalid
    assert got.message == "input.signIn.opter_no: must equal opter"
    assert REFUSAL_CODES[got.reason] is ResultCode.field_invalid


def test_sign_in_refuses_an_operator_not_registered_at_the_institution() -> None:
    got = refusal(decide_sign_in(sign_in_request(), SignInLoad(False, 42), NOW))
    assert got.reason is Refusal.operator_unknown
    assert got.message == f"opter: OP1 is not an operator of {HOSPITAL}"
    assert REFUSAL_CODES[got.reason] is ResultCode.operator_unknown


# -- 9002 ---------------------------------------------------------------------------------


def sign_out_request(**kw: str) -> SignOutRequest:
    base = {"sign_no": SIGN_NO, "opter": "OP1", "input_sign_no": SIGN_NO, "input_opter_no": "OP1"}
    base.update(kw)
    return SignOutRequest(**base)


OPEN = SignOutLoad(SignIn(opter="OP1", signed_out=False))


def test_sign_out_of_an_open_sign_in_moves_it_to_signed_out() -> None:
    got = decide_sign_out(sign_out_request(), OPEN)
    assert not isinstance(got, Refused)
    assert got.sign_no == SIGN_NO
    assert got.state is SignInState.signed_out


def test_sign_out_of_a_signed_out_sign_no_is_refused_as_the_lock_found_it() -> None:
    """A concurrent sign-out committed first: the envelope's check passed on the
    unlocked read, the row read again under the lock says signed out."""
    closed = SignOutLoad(SignIn(opter="OP1", signed_out=True))
    got = refusal(decide_sign_out(sign_out_request(), closed))
    assert got.reason is Refusal.sign_no_signed_out
    assert got.message == f"sign_no: {SIGN_NO} is signed out"
    assert REFUSAL_CODES[got.reason] is ResultCode.sign_no_signed_out


def test_sign_out_refusals_come_in_order() -> None:
    """The sign-in first (as the old participant order had it), then the input's
    fields against the envelope's."""
    cases = [
        (sign_out_request(sign_no=""), OPEN, Refusal.sign_in_required, "sign_no: required"),
        (sign_out_request(), SignOutLoad(None), Refusal.sign_no_unknown, "sign_no: "),
        (
            sign_out_request(opter="OP2", input_sign_no="X"),
            OPEN,
            Refusal.operator_not_signed_in,
            "opter: OP2 did not sign in as",
        ),
        (
            sign_out_request(input_sign_no="X", input_opter_no="OP2"),
            OPEN,
            Refusal.field_invalid,
            "input.signOut.sign_no: must equal sign_no",
        ),
        (
            sign_out_request(input_opter_no="OP2"),
            OPEN,
            Refusal.field_invalid,
            "input.signOut.opter_no: must equal opter",
        ),
    ]
    for req, load, want, message in cases:
        got = refusal(decide_sign_out(req, load))
        assert (got.reason, got.message.startswith(message)) == (want, True), got


def test_a_sign_in_goes_open_to_signed_out_and_never_back() -> None:
    assert transition(SignInState.open, SignInState.signed_out) is SignInState.signed_out
    for current, target in [
        (SignInState.signed_out, SignInState.open),
        (SignInState.signed_out, SignInState.signed_out),
        (SignInState.open, SignInState.open),
    ]:
        with pytest.raises(LifecycleError, match=f"{current} -> {target} is not allowed"):
            transition(current, target)
