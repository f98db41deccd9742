"""The patient's credential as a money transaction (2201, 2207) presents it: the
`mdtrt_cert_type` and the card proof's `yk_cred_ref` of the 1101 that read the card
(settlement/proofs.py decides whether they may carry it)."""

from __future__ import annotations

from engine.txn.context import TxContext
from settlement.proofs import Credential, Presented


def presented(ctx: TxContext, mdtrt_cert_type: str, cred_ref: str, psn_no: str) -> Presented:
    return Presented(
        credential=Credential(mdtrt_cert_type),  # the CertType pattern allows only these
        cred_ref=cred_ref,
        psn_no=psn_no,
        terminal_id=ctx.terminal.terminal_id,
        fixmedins_code=ctx.terminal.fixmedins_code,
    )
