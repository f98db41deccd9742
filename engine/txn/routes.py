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
from engine.txn.pharmacy import cancel as pharmacy_cancel
from engine.txn.pharmacy import presettle as pharmacy_presettle
from engine.txn.pharmacy import settle as pharmacy_settle
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
from terminals.messages.pharmacy import cancel as pharmacy_cancel_msg
from terminals.messages.pharmacy import presettle as pharmacy_presettle_msg
from terminals.messages.pharmacy import settle as pharmacy_settle_msg
from terminals.messages.session import sign_in as sign_in_msg
from terminals.messages.session import sign_out as sign_out_msg

_FLOWS = (
    TxSpec.of(register_msg, register.FLOW, names_person=True),
    TxSpec.of(unregister_msg, unregister.FLOW, names_person=True),
    TxSpec.of(visit_msg, visit.FLOW, names_person=True),
    TxSpec.of(fees_msg, fees.FLOW, names_person=True),
    TxSpec.of(fees_cancel_msg, fees_cancel.FLOW, names_person=True),
    TxSpec.of(presettle_msg, presettle.FLOW, names_person=True),
    TxSpec.of(settle_msg, settle.FLOW, names_person=True),
    TxSpec.of(cancel_msg, cancel.FLOW, names_person=True),
    TxSpec.of(pharmacy_presettle_msg, pharmacy_presettle.FLOW, names_person=True),
    TxSpec.of(pharmacy_settle_msg, pharmacy_settle.FLOW, names_person=True),
    TxSpec.of(pharmacy_cancel_msg, pharmacy_cancel.FLOW, names_person=True),
    TxSpec.of(reversal_msg, reversal.FLOW, names_person=True),
    TxSpec.of(sign_in_msg, sign_in.FLOW),
    TxSpec.of(sign_out_msg, sign_out.FLOW),
    TxSpec.of(challenge_msg, challenge.FLOW),
    TxSpec.of(person_info_msg, person_info.FLOW),
)


def build_routes() -> MappingProxyType[str, TxSpec]:
    routes = {spec.infno: spec for spec in _FLOWS}
    if len(routes) != len(_FLOWS):
        raise RuntimeError("two transaction modules claim the same infno")
    return MappingProxyType(routes)
