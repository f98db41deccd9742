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
from terminals.messages import (
    tx1101,
    tx2201,
    tx2202,
    tx2203,
    tx2204,
    tx2205,
    tx2206,
    tx2207,
    tx2208,
    tx2601,
    tx9001,
    tx9002,
    tx9301,
)

_FLOWS = (
    TxSpec(
        tx2201.INFNO, tx2201.NAME, tx2201.Input, tx2201.Output, True,
        flow=register.FLOW, names_person=True,
    ),
    TxSpec(
        tx2202.INFNO, tx2202.NAME, tx2202.Input, tx2202.Output, True,
        flow=unregister.FLOW, names_person=True,
    ),
    TxSpec(
        tx2203.INFNO, tx2203.NAME, tx2203.Input, tx2203.Output, True,
        flow=visit.FLOW, names_person=True,
    ),
    TxSpec(
        tx2204.INFNO, tx2204.NAME, tx2204.Input, tx2204.Output, True,
        flow=fees.FLOW, names_person=True,
    ),
    TxSpec(
        tx2205.INFNO, tx2205.NAME, tx2205.Input, tx2205.Output, True,
        flow=fees_cancel.FLOW, names_person=True,
    ),
    TxSpec(
        tx2206.INFNO, tx2206.NAME, tx2206.Input, tx2206.Output, False,
        flow=presettle.FLOW, names_person=True,
    ),
    TxSpec(
        tx2207.INFNO, tx2207.NAME, tx2207.Input, tx2207.Output, True,
        flow=settle.FLOW, names_person=True,
    ),
    TxSpec(
        tx2208.INFNO, tx2208.NAME, tx2208.Input, tx2208.Output, True,
        flow=cancel.FLOW, names_person=True,
    ),
    TxSpec(
        tx2601.INFNO, tx2601.NAME, tx2601.Input, tx2601.Output, True,
        flow=reversal.FLOW, names_person=True,
    ),
    TxSpec(
        tx9001.INFNO, tx9001.NAME, tx9001.Input, tx9001.Output, True, flow=sign_in.FLOW,
    ),
    TxSpec(
        tx9002.INFNO, tx9002.NAME, tx9002.Input, tx9002.Output, True, flow=sign_out.FLOW,
    ),
    TxSpec(
        tx9301.INFNO, tx9301.NAME, tx9301.Input, tx9301.Output, True, flow=challenge.FLOW,
    ),
    TxSpec(
        tx1101.INFNO, tx1101.NAME, tx1101.Input, tx1101.Output, True, flow=person_info.FLOW,
    ),
)  # fmt: skip


def build_routes() -> MappingProxyType[str, TxSpec]:
    routes = {spec.infno: spec for spec in _FLOWS}
    if len(routes) != len(_FLOWS):
        raise RuntimeError("two transaction modules claim the same infno")
    return MappingProxyType(routes)
