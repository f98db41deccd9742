"""Request Structs as they go on the wire: each transaction's `Input` with its `INFNO`,
and the body encoded without the fields that hold their default.

The message Structs encode every field, defaults included, and the engine relies on
that when it keeps a decoded request (2201's registration, 2204's detail). A client
sends only what it set: that is what integrators' bodies always were, it halves a
2204 body (the engine's `input` limit is 40 000 characters) and the engine decodes it
to the same Struct. `lean()` converts a request to a generated twin of its type with
`omit_defaults` (msgspec does the copy in C); a twin has no length or pattern
constraints, so nothing is refused before it reaches the engine, which names the
field. A twin follows the declared type, not the runtime one: a 2207 `Data` given to
2206 goes without the 2207-only fields.
"""

from __future__ import annotations

import decimal
import functools
import operator
import types
import typing
from typing import Any

import msgspec

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

Request = (
    person_info_msg.Input
    | register_msg.Input
    | unregister_msg.Input
    | visit_msg.Input
    | fees_msg.Input
    | fees_cancel_msg.Input
    | presettle_msg.Input
    | settle_msg.Input
    | cancel_msg.Input
    | pharmacy_presettle_msg.Input
    | pharmacy_settle_msg.Input
    | pharmacy_cancel_msg.Input
    | reversal_msg.Input
    | sign_in_msg.Input
    | sign_out_msg.Input
    | challenge_msg.Input
)

_MODULES = (
    person_info_msg,
    register_msg,
    unregister_msg,
    visit_msg,
    fees_msg,
    fees_cancel_msg,
    presettle_msg,
    settle_msg,
    cancel_msg,
    pharmacy_presettle_msg,
    pharmacy_settle_msg,
    pharmacy_cancel_msg,
    reversal_msg,
    sign_in_msg,
    sign_out_msg,
    challenge_msg,
)
INFNOS: dict[type[msgspec.Struct], str] = {m.Input: m.INFNO for m in _MODULES}

_twins: dict[type[msgspec.Struct], type[msgspec.Struct]] = {}


def infno_of(request: Request) -> str:
    """The transaction code whose `Input` `request` is."""
    try:
        return INFNOS[type(request)]
    except KeyError:
        raise TypeError(f"{type(request).__name__} is not the Input of a transaction") from None


def lean(request: msgspec.Struct) -> msgspec.Struct:
    """`request` as its twin that encodes without default-valued fields."""
    twin = _twins.get(type(request)) or _twin(type(request))
    return msgspec.convert(request, twin, from_attributes=True)


def as_dict(request: msgspec.Struct) -> dict[str, Any]:
    """The JSON object `request` is sent as (Decimals kept), for a test to break."""
    out: dict[str, Any] = msgspec.to_builtins(lean(request), builtin_types=(decimal.Decimal,))
    return out


def _twin(cls: type[msgspec.Struct]) -> type[msgspec.Struct]:
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    rename = {}
    for f in msgspec.structs.fields(cls):
        tp = _twin_type(f.type)
        if f.encode_name != f.name:
            rename[f.name] = f.encode_name
        if f.default is not msgspec.NODEFAULT:
            fields.append((f.name, tp, f.default))
        elif f.default_factory is not msgspec.NODEFAULT:
            fields.append((f.name, tp, msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, tp))
    # A masking __repr__ (STYLE.md §10: credentials, cryptograms) goes with the twin.
    mro = cls.__mro__[: cls.__mro__.index(msgspec.Struct)]
    own_repr = next((k.__dict__["__repr__"] for k in mro if "__repr__" in k.__dict__), None)
    twin = msgspec.defstruct(
        cls.__name__,
        fields,
        kw_only=True,
        omit_defaults=True,
        rename=rename or None,
        namespace={"__repr__": own_repr} if own_repr else None,
    )
    _twins[cls] = twin
    return twin


def _twin_type(tp: Any) -> Any:
    """`tp` with Struct types replaced by their twins and constraints (Meta) dropped."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _twin_type(typing.get_args(tp)[0])
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return _twins.get(tp) or _twin(tp)
    if origin is list:
        return list[_twin_type(typing.get_args(tp)[0])]  # type: ignore[misc]
    if origin in (typing.Union, types.UnionType):
        return functools.reduce(operator.or_, (_twin_type(a) for a in typing.get_args(tp)))
    if origin is None or origin is typing.Literal:
        return tp
    raise TypeError(f"terminals.wire: no twin for a field of type {tp!r}")
