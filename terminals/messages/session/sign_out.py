"""9002 签退 operator sign-out: the `sign_no` is closed for further calls."""

from __future__ import annotations

from terminals import fields as f
from terminals.messages.base import In, Out

INFNO = "9002"
NAME = "sign-out"


class SignOutData(In, frozen=True, kw_only=True):
    sign_no: f.Id30
    opter_no: f.Id30


class Input(In, frozen=True, kw_only=True):
    signOut: SignOutData


class SignOutOut(Out, frozen=True, kw_only=True):
    sign_time: str
    sign_no: str


class Output(Out, frozen=True, kw_only=True):
    signoutoutb: SignOutOut
