"""The SDK's answer check finds a settlement answer whose amounts do not add up."""

from __future__ import annotations

import decimal

import msgspec

from terminals.checks import identity_failures
from terminals.messages.setl import SetlInfo

D = decimal.Decimal


def answer(**money: str) -> SetlInfo:
    amounts = {
        f.name: D("0.00") for f in msgspec.structs.fields(SetlInfo) if f.type is decimal.Decimal
    }
    amounts.update({k: D(v) for k, v in money.items()})
    text = {f.name: "" for f in msgspec.structs.fields(SetlInfo) if f.type is str}
    return SetlInfo(**text, **amounts, setl_id=None, age=30)  # type: ignore[arg-type]


CONSISTENT = dict(
    medfee_sumamt="100.00",
    inscp_scp_amt="100.00",
    hifp_pay="60.00",
    fund_pay_sumamt="60.00",
    psn_part_amt="40.00",
    acct_pay="15.50",
    psn_cash_pay="24.50",
)


def test_consistent_answer_passes() -> None:
    assert identity_failures(answer(**CONSISTENT)) == []


def test_each_broken_identity_is_named() -> None:
    assert identity_failures(answer(**{**CONSISTENT, "inscp_scp_amt": "99.99"})) == [
        "medfee_sumamt = fulamt_ownpay_amt + overlmt_selfpay + preselfpay_amt + inscp_scp_amt"
    ]
    broken = identity_failures(answer(**{**CONSISTENT, "hifp_pay": "60.01"}))
    assert broken == ["fund_pay_sumamt = sum of the fund payments"]
    broken = identity_failures(answer(**{**CONSISTENT, "psn_cash_pay": "24.49"}))
    assert broken == ["psn_part_amt = acct_pay + acct_mulaid_pay + psn_cash_pay"]
