"""2601 冲正交易 reversal of a request whose outcome is unknown, by its msgid
(DOMAIN.md §2.9). yikatong reverses settlements (2207 outpatient, 2102 pharmacy: the
settlement is cancelled) and cancellations (2208, 2103: the settlement is put back as
it was, or `reversal_cancellation_stands` when its visit, account or limits moved on
since); the national list also names 2304, 2305 and 2401, answered
`reversal_not_supported` until inpatient settlement exists. Reversal is idempotent:
reversing twice answers `already_reversed`; reversing a msgid that never arrived leaves
a tombstone so that the late original is refused."""

from __future__ import annotations

from typing import Literal

from terminals import fields as f
from terminals.messages.base import In, Out

INFNO = "2601"
NAME = "reversal"
REVERSIBLE = frozenset({"2207", "2102", "2208", "2103"})
NATIONALLY_REVERSIBLE = frozenset({"2102", "2103", "2207", "2208", "2304", "2305", "2401"})


class Data(In, frozen=True, kw_only=True):
    psn_no: f.Id30
    omsgid: f.MsgId
    oinfno: f.Code10


class Input(In, frozen=True, kw_only=True):
    data: Data


class ReversalOut(Out, frozen=True, kw_only=True):
    omsgid: str
    oinfno: str
    # reversed: the original's effect was undone now (a settlement cancelled, or a
    # cancelled one put back); already_reversed: by an earlier 2601; tombstoned: the original never arrived and will be refused if it does.
    rslt: Literal["reversed", "already_reversed", "tombstoned"]
    setl_id: str | None


class Output(Out, frozen=True, kw_only=True):
    data: ReversalOut
