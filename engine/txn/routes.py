"""Routing is one table: `infno` → the transaction's specification (STYLE.md §1).

Transaction modules never import this one (no import circle): each exposes its `FLOW`
and the table is built here."""

from __future__ import annotations

from types import MappingProxyType

from engine.txn import reversal
from engine.txn.card import challenge, person_info
from engine.txn.outpatient import (
    cancel,
    fees,
    fees_cancel,
    presettle,
    register,
    settle,
    unregister,
    visit,
)
from engine.txn.session import sign_in, sign_out
from engine.txn.spec import TxSpec
from terminals.messages import reversal as reversal_msg
from terminals.messages.card import challenge as challenge_msg
from terminals.messages.card import person_info as person_info_msg
from terminals.messages.outpatient import cancel as cancel_msg
from terminals.messages.outpatient import fees as fees_msg
from terminals.messages.outpatient import fees_cancel as fees_cancel_msg
from terminals.messages.outpatient import presettle as presettle_msg
from terminals.messages.outpatient import register as register_msg
from terminals.messages.outpatient import settle as settle_msg
from terminals.messages.outpatient import unregister as unregister_msg
from terminals.messages.outpatient import visit as visit_msg
from terminals.messages.session import sign_in as sign_in_msg
from terminals.messages.session import sign_out as sign_out_msg

_FLOWS = (
    TxSpec(
        register_msg.INFNO, register_msg.NAME,
        register_msg.Input, register_msg.Output, True,
        flow=register.FLOW, names_person=True,
    ),
    TxSpec(
        unregister_msg.INFNO, unregister_msg.NAME,
        unregister_msg.Input, unregister_msg.Output, True,
        flow=unregister.FLOW, names_person=True,
    ),
    TxSpec(
        visit_msg.INFNO, visit_msg.NAME,
        visit_msg.Input, visit_msg.Output, True,
        flow=visit.FLOW, names_person=True,
    ),
    TxSpec(
        fees_msg.INFNO, fees_msg.NAME,
        fees_msg.Input, fees_msg.Output, True,
        flow=fees.FLOW, names_person=True,
    ),
    TxSpec(
        fees_cancel_msg.INFNO, fees_cancel_msg.NAME,
        fees_cancel_msg.Input, fees_cancel_msg.Output, True,
        flow=fees_cancel.FLOW, names_person=True,
    ),
    TxSpec(
        presettle_msg.INFNO, presettle_msg.NAME,
        presettle_msg.Input, presettle_msg.Output, False,
        flow=presettle.FLOW, names_person=True,
    ),
    TxSpec(
        settle_msg.INFNO, settle_msg.NAME,
        settle_msg.Input, settle_msg.Output, True,
        flow=settle.FLOW, names_person=True,
    ),
    TxSpec(
        cancel_msg.INFNO, cancel_msg.NAME,
        cancel_msg.Input, cancel_msg.Output, True,
        flow=cancel.FLOW, names_person=True,
    ),
    TxSpec(
        reversal_msg.INFNO, reversal_msg.NAME,
        reversal_msg.Input, reversal_msg.Output, True,
        flow=reversal.FLOW, names_person=True,
    ),
    TxSpec(
        sign_in_msg.INFNO, sign_in_msg.NAME,
        sign_in_msg.Input, sign_in_msg.Output, True,
        flow=sign_in.FLOW,
    ),
    TxSpec(
        sign_out_msg.INFNO, sign_out_msg.NAME,
        sign_out_msg.Input, sign_out_msg.Output, True,
        flow=sign_out.FLOW,
    ),
    TxSpec(
        challenge_msg.INFNO, challenge_msg.NAME,
        challenge_msg.Input, challenge_msg.Output, True,
        flow=challenge.FLOW,
    ),
    TxSpec(
        person_info_msg.INFNO, person_info_msg.NAME,
        person_info_msg.Input, person_info_msg.Output, True,
        flow=person_info.FLOW,
    ),
)  # fmt: skip


def build_routes() -> MappingProxyType[str, TxSpec]:
    routes = {spec.infno: spec for spec in _FLOWS}
    if len(routes) != len(_FLOWS):
        raise RuntimeError("two transaction modules claim the same infno")
    return MappingProxyType(routes)
