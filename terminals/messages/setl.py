"""`setlinfo` and `setldetail`, the settlement answer shared by 2206, 2207 and 2208
(DOMAIN.md §2.6); money in yuan with 2 decimals."""

from __future__ import annotations

import decimal

from terminals.messages.base import Out


class SetlInfo(Out, frozen=True, kw_only=True):
    mdtrt_id: str
    setl_id: str | None
    psn_no: str
    psn_name: str
    psn_cert_type: str
    certno: str
    gend: str
    naty: str
    brdy: str
    age: int
    insutype: str
    psn_type: str
    cvlserv_flag: str
    mdtrt_cert_type: str
    med_type: str
    setl_time: str
    medfee_sumamt: decimal.Decimal
    fulamt_ownpay_amt: decimal.Decimal
    overlmt_selfpay: decimal.Decimal
    preselfpay_amt: decimal.Decimal
    inscp_scp_amt: decimal.Decimal
    act_pay_dedc: decimal.Decimal
    hifp_pay: decimal.Decimal
    pool_prop_selfpay: decimal.Decimal
    cvlserv_pay: decimal.Decimal
    hifes_pay: decimal.Decimal
    hifmi_pay: decimal.Decimal
    hifob_pay: decimal.Decimal
    hifdm_pay: decimal.Decimal
    maf_pay: decimal.Decimal
    oth_pay: decimal.Decimal
    fund_pay_sumamt: decimal.Decimal
    psn_part_amt: decimal.Decimal
    acct_pay: decimal.Decimal
    acct_mulaid_pay: decimal.Decimal
    psn_cash_pay: decimal.Decimal
    hosp_part_amt: decimal.Decimal
    balc: decimal.Decimal
    medins_setl_id: str
    clr_optins: str
    clr_way: str
    clr_type: str


class SetlDetail(Out, frozen=True, kw_only=True):
    fund_pay_type: str
    fund_pay_type_name: str
    inscp_scp_amt: decimal.Decimal
    crt_payb_lmt_amt: decimal.Decimal
    fund_payamt: decimal.Decimal
    setl_proc_info: str


class Output(Out, frozen=True, kw_only=True):
    setlinfo: SetlInfo
    setldetail: list[SetlDetail]
