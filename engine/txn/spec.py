"""One transaction code's specification: its wire types and the flow that runs it
(engine.txn.flow: load → decide → write). routes.py holds the one table of them."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from engine.txn.flow import Flow


@dataclass(frozen=True)
class TxSpec:
    infno: str
    name: str
    input_type: type[Any]
    output_type: type[Any]
    # State-changing transactions run in one database transaction (BEGIN, load, write +
    # COMMIT); read-only ones are their load alone, in autocommit.
    mutating: bool
    flow: Flow[Any, Any, Any]
    names_person: bool = False  # the envelope must carry insuplc_admdvs

    @classmethod
    def of(
        cls, messages: ModuleType, flow: Flow[Any, Any, Any], *, names_person: bool = False
    ) -> TxSpec:
        """The spec of the code whose wire Structs are in `messages` (a
        terminals.messages module), run by `flow`; it changes state exactly when the
        flow has a write."""
        return cls(
            infno=messages.INFNO,
            name=messages.NAME,
            input_type=messages.Input,
            output_type=messages.Output,
            mutating=flow.write_function is not None,
            flow=flow,
            names_person=names_person,
        )
