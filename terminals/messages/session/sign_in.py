"""9001 签到 operator sign-in: returns the `sign_no` every later call carries."""

from __future__ import annotations

from terminals import fields as f
from terminals.messages.base import In, Out

INFNO = "9001"
NAME = "sign-in"


class SignInData(In, frozen=True, kw_only=True):
    opter_no: f.Id30
    mac: f.Code50 = ""
    ip: f.Code50 = ""


class Input(In, frozen=True, kw_only=True):
    signIn: SignInData


class SignInOut(Out, frozen=True, kw_only=True):
    sign_time: str
    sign_no: str


class Output(Out, frozen=True, kw_only=True):
    signinoutb: SignInOut
