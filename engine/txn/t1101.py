"""1101 person info: finds the insured person by credential and answers baseinfo and
insuinfo. By ID number (02) for now; social security card (03) and e-card (01) need
card authentication and are refused with `cert_type_not_supported` until then."""

from __future__ import annotations

from typing import ClassVar

from engine.txn.common import DecodeInput, RequireSignIn
from engine.txn.context import TxContext
from engine.txn.people import base_info, insu_info
from engine.txn.pipeline import Participant
from engine.txn.registry import TxSpec
from terminals.messages import tx1101
from terminals.results import ResultCode


class FindPerson(Participant):
    name: ClassVar[str] = "find_person"

    async def prepare(self, ctx: TxContext) -> ResultCode | None:
        data: tx1101.Data = ctx.input.data
        if data.mdtrt_cert_type != "02":
            return ctx.refuse(
                ResultCode.cert_type_not_supported,
                f"input.data.mdtrt_cert_type: {data.mdtrt_cert_type} is not supported yet; use 02",
            )
        person = await ctx.conn.fetchrow(
            "SELECT * FROM persons WHERE certno = $1",
            data.mdtrt_cert_no,
            timeout=ctx.services.command_timeout_s,
        )
        if person is None:
            return ctx.refuse(
                ResultCode.person_not_found, "input.data.mdtrt_cert_no: no insured person found"
            )
        ctx.output = tx1101.Output(
            baseinfo=base_info(person, ctx.now.date()), insuinfo=[insu_info(person)], idetinfo=[]
        )
        return None


SPEC = TxSpec(
    infno=tx1101.INFNO,
    name=tx1101.NAME,
    input_type=tx1101.Input,
    output_type=tx1101.Output,
    participants=(DecodeInput(tx1101.Input), RequireSignIn(), FindPerson()),
    mutating=False,
)
