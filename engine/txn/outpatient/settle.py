"""2207 门诊结算 outpatient settlement (INFNO 2207): the split of the visit's unsettled
details posted as one balanced journal entry, the details marked settled, the personal
account debited and the year's accumulators advanced — one write, after a load that
locked visit, person and accumulators in that order, so concurrent settlements of one
person queue and none can overdraw the account or pass the cap (the database's CHECKs
would refuse it anyway)."""

from __future__ import annotations

from typing import Any, ClassVar

from engine.invariant import InvariantViolation
from engine.txn.context import TxContext
from engine.txn.outpatient.presettle import PreSettle
from settlement.outpatient import SettleDecision, SettleLoad, SettleRequest
from terminals.messages import setl
from terminals.messages.outpatient import settle as settle_msg

INFNO = settle_msg.INFNO


class Settle(PreSettle):
    write_function: ClassVar[str | None] = "yk_write_outpatient_settle"
    lock: ClassVar[bool] = True
    his_totals: ClassVar[bool] = True

    def write_doc(
        self,
        ctx: TxContext,
        req: SettleRequest,
        load: SettleLoad,
        decision: SettleDecision,
        output: setl.Output,
    ) -> dict[str, Any]:
        s, env, acc = decision.split, ctx.envelope, decision.accumulators_after
        person = load.person
        if person is None:  # decide_settle refuses a missing person
            raise InvariantViolation("a settlement decided without its person")
        limits = decision.open_limits
        return {
            "settlement": {
                "setl_id": decision.setl_id,
                "mdtrt_id": req.mdtrt_id,
                "psn_no": req.psn_no,
                "insuplc_admdvs": person.insuplc_admdvs,
                "mdtrtarea_admvs": env.mdtrtarea_admvs,
                "fixmedins_code": env.fixmedins_code,
                "insutype": person.insutype,
                "med_type": req.med_type,
                "year": acc.year,
                "msgid": env.msgid,
                "state": decision.state.value,
                "setl_time": ctx.now.isoformat(),
                "medfee_sumamt_fen": s.medfee_sumamt_fen,
                "fulamt_ownpay_amt_fen": s.fulamt_ownpay_amt_fen,
                "overlmt_selfpay_fen": s.overlmt_selfpay_fen,
                "preselfpay_amt_fen": s.preselfpay_amt_fen,
                "inscp_scp_amt_fen": s.inscp_scp_amt_fen,
                "act_pay_dedc_fen": s.act_pay_dedc_fen,
                "hifp_pay_fen": s.hifp_pay_fen,
                "fund_pay_sumamt_fen": s.fund_pay_sumamt_fen,
                "psn_part_amt_fen": s.psn_part_amt_fen,
                "acct_pay_fen": s.acct_pay_fen,
                "psn_cash_pay_fen": s.psn_cash_pay_fen,
                "hosp_part_amt_fen": s.hosp_part_amt_fen,
                "balc_before_fen": s.balc_before_fen,
                "balc_fen": s.balc_fen,
            },
            "postings": [
                {"account": p.account, "amount_fen": p.amount_fen} for p in decision.postings
            ],
            "feedetl_sns": decision.feedetl_sns,
            "accumulators": {
                "year": acc.year,
                "deductible_used_fen": acc.deductible_used_fen,
                "outpatient_fund_paid_fen": acc.outpatient_fund_paid_fen,
                "fund_paid_fen": acc.fund_paid_fen,
                "deductible_fen": limits.deductible_fen,
                "outpatient_limit_fen": limits.outpatient_limit_fen,
                "annual_cap_fen": limits.annual_cap_fen,
            },
            "answer_output": output,
        }

    def money(self, decision: SettleDecision) -> tuple[str, int, int, int]:
        s = decision.split
        return ("settle", s.fund_pay_sumamt_fen, s.acct_pay_fen, s.psn_cash_pay_fen)


FLOW = Settle()
