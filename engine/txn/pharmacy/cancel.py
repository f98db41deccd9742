"""2103 药店结算撤销 cancel a pharmacy settlement by its setl_id (INFNO 2103): the same
decision and write as 2208 (settlement.cancellation.decide_cancel): the exact negation of
its journal entry, the personal account refunded, the year's accumulators restored; the
purchase's lines stay with it, unsettled, as 2208 leaves an outpatient visit's. A 2103
names only a pharmacy settlement and a 2208 only an outpatient one."""

from __future__ import annotations

from typing import ClassVar

from engine.txn.outpatient.cancel import CancelSettlement
from terminals.messages.pharmacy import cancel as cancel_msg

INFNO = cancel_msg.INFNO


class PharmacyCancel(CancelSettlement):
    pharmacy: ClassVar[bool] = True


FLOW = PharmacyCancel()
