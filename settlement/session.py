"""The sign-in a request claims (`sign_no`), checked against what the load found."""

from __future__ import annotations

from msgspec import Struct

from settlement.lifecycle import SignInState
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
