"""How an outpatient (pre-)settlement and its cancellation are shown on the wire:
setlinfo and setldetail (DOMAIN.md §2.6), from the domain's decision and what the load
found."""

from __future__ import annotations

import datetime as dt
import decimal

import msgspec

from engine.txn.people import age_on, psn_type_of
from settlement.adjudication import Benefit
from settlement.money import fen_to_yuan as y
from settlement.outpatient import Person, SettleDecision, Visit
from terminals.messages import setl


def setl_output(
    person: Person,
    visit: Visit,
    decision: SettleDecision,
    *,
    med_type: str,
    msgid: str,
    setl_time: dt.datetime,
) -> setl.Output:
    s, p = decision.split, person
    info = setl.SetlInfo(
        mdtrt_id=visit.mdtrt_id,
        setl_id=decision.setl_id,
        psn_no=p.psn_no,
        psn_name=p.psn_name,
        psn_cert_type=p.psn_cert_type,
        certno=p.certno,
        gend=p.gend,
        naty=p.naty,
        brdy=p.brdy.isoformat(),
        age=age_on(p.brdy, setl_time.date()),
        insutype=p.insutype,
        psn_type=psn_type_of(p.insutype, p.retired),
        cvlserv_flag=p.cvlserv_flag,
        mdtrt_cert_type=visit.mdtrt_cert_type,
        med_type=med_type,
        setl_time=f"{setl_time:%Y-%m-%d %H:%M:%S}",
        medfee_sumamt=y(s.medfee_sumamt_fen),
        fulamt_ownpay_amt=y(s.fulamt_ownpay_amt_fen),
        overlmt_selfpay=y(s.overlmt_selfpay_fen),
        preselfpay_amt=y(s.preselfpay_amt_fen),
        inscp_scp_amt=y(s.inscp_scp_amt_fen),
        act_pay_dedc=y(s.act_pay_dedc_fen),
        hifp_pay=y(s.hifp_pay_fen),
        pool_prop_selfpay=y(0),
        cvlserv_pay=y(s.cvlserv_pay_fen),
        hifes_pay=y(s.hifes_pay_fen),
        hifmi_pay=y(s.hifmi_pay_fen),
        hifob_pay=y(s.hifob_pay_fen),
        hifdm_pay=y(s.hifdm_pay_fen),
        maf_pay=y(s.maf_pay_fen),
        oth_pay=y(s.oth_pay_fen),
        fund_pay_sumamt=y(s.fund_pay_sumamt_fen),
        psn_part_amt=y(s.psn_part_amt_fen),
        acct_pay=y(s.acct_pay_fen),
        acct_mulaid_pay=y(s.acct_mulaid_pay_fen),
        psn_cash_pay=y(s.psn_cash_pay_fen),
        hosp_part_amt=y(s.hosp_part_amt_fen),
        balc=y(s.balc_fen),
        medins_setl_id=msgid,
        clr_optins=decision.mdtrtarea_admvs,  # the treating region clears (DOMAIN.md §5.4)
        clr_way="1",
        clr_type="41" if decision.benefit is Benefit.pharmacy else "11",
    )
    detail = [
        setl.SetlDetail(
            fund_pay_type=r.fund_pay_type,
            fund_pay_type_name=r.fund_pay_type_name,
            inscp_scp_amt=y(r.inscp_scp_amt_fen),
            crt_payb_lmt_amt=y(r.crt_payb_lmt_amt_fen),
            fund_payamt=y(r.fund_payamt_fen),
            setl_proc_info=r.setl_proc_info,
        )
        for r in s.setldetail
    ]
    return setl.Output(setlinfo=info, setldetail=detail)


# Every amount of setlinfo but the balance is shown negated in a cancellation.
_MONEY_FIELDS = tuple(
    f.name
    for f in msgspec.structs.fields(setl.SetlInfo)
    if f.type is decimal.Decimal and f.name != "balc"
)


def cancel_output(
    original: setl.Output, balance_after_fen: int, *, msgid: str, cancel_time: dt.datetime
) -> setl.Output:
    """A cancellation's answer (2208): the settlement's own answer with every amount
    negated (a refund), this cancellation's time and msgid, and the balance after the
    refund."""
    negated = {name: 0 - getattr(original.setlinfo, name) for name in _MONEY_FIELDS}
    info = msgspec.structs.replace(
        original.setlinfo,
        **negated,
        balc=y(balance_after_fen),
        setl_time=f"{cancel_time:%Y-%m-%d %H:%M:%S}",
        medins_setl_id=msgid,
    )
    details = [
        msgspec.structs.replace(d, inscp_scp_amt=0 - d.inscp_scp_amt, fund_payamt=0 - d.fund_payamt)
        for d in original.setldetail
    ]
    return setl.Output(setlinfo=info, setldetail=details)
