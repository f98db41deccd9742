"""Routing is a table: `infno` -> the transaction's specification (STYLE.md §1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.txn.pipeline import Participant


@dataclass(frozen=True)
class TxSpec:
    infno: str
    name: str
    input_type: type[Any]
    output_type: type[Any]
    participants: tuple[Participant, ...]
    # State-changing transactions run in one database transaction and claim their
    # msgid for idempotency; read-only ones do neither.
    mutating: bool


def build_registry() -> dict[str, TxSpec]:
    from engine.txn import (
        t1101,
        t2201,
        t2202,
        t2203,
        t2204,
        t2205,
        t2206,
        t2207,
        t2208,
        t2601,
        t9001,
        t9002,
        t9301,
    )

    specs = [
        m.SPEC
        for m in (
            t9001,
            t9002,
            t9301,
            t1101,
            t2201,
            t2202,
            t2203,
            t2204,
            t2205,
            t2206,
            t2207,
            t2208,
            t2601,
        )
    ]
    registry = {spec.infno: spec for spec in specs}
    if len(registry) != len(specs):
        raise RuntimeError("two transaction modules claim the same infno")
    return registry
