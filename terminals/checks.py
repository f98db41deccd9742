"""Checks an integrator can run on a settlement answer as received: the money
identities of DOMAIN.md §2.8, to the fen. A HIS that books what the engine answered
should refuse to book an answer that fails them."""

from __future__ import annotations

import decimal

from terminals.messages.setl import SetlInfo

FUNDS = (
    "hifp_pay",
    "cvlserv_pay",
    "hifes_pay",
    "hifmi_pay",
    "hifob_pay",
    "hifdm_pay",
    "maf_pay",
    "oth_pay",
)


def _fen(value: decimal.Decimal) -> int:
    return int(value.scaleb(2).to_integral_value(rounding=decimal.ROUND_HALF_UP))


def identity_failures(info: SetlInfo) -> list[str]:
    """The identities that do not hold (empty when the answer is consistent)."""
    f = {
        name: _fen(value)
        for name in info.__struct_fields__
        if isinstance(value := getattr(info, name), decimal.Decimal)
    }
    checks = {
        "medfee_sumamt = fulamt_ownpay_amt + overlmt_selfpay + preselfpay_amt + inscp_scp_amt": f[
            "medfee_sumamt"
        ]
        == f["fulamt_ownpay_amt"] + f["overlmt_selfpay"] + f["preselfpay_amt"] + f["inscp_scp_amt"],
        "fund_pay_sumamt = sum of the fund payments": f["fund_pay_sumamt"]
        == sum(f[x] for x in FUNDS),
        "psn_part_amt = medfee_sumamt - fund_pay_sumamt - hosp_part_amt": f["psn_part_amt"]
        == f["medfee_sumamt"] - f["fund_pay_sumamt"] - f["hosp_part_amt"],
        "psn_part_amt = acct_pay + acct_mulaid_pay + psn_cash_pay": f["psn_part_amt"]
        == f["acct_pay"] + f["acct_mulaid_pay"] + f["psn_cash_pay"],
    }
    return [name for name, ok in checks.items() if not ok]
