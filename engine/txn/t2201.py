"""2201 outpatient registration: opens a visit for an insured person at this
institution and returns its `mdtrt_id`. One open visit per outpatient number."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from engine.txn.common import (
    ClaimMsgid,
    DecodeInput,
    RequireInsuredRegion,
    RequireSignIn,
    check_person_region,
    fetch_person,
    money_message,
    wire_datetime,
)
from engine.txn.context import TxContext
from engine.txn.pipeline import Participant
from engine.txn.registry import TxSpec
from settlement.money import MoneyError
from terminals.messages import tx2201
from terminals.results import ResultCode


class Register(Participant):
    name: ClassVar[str] = "register"

    async def prepare(self, ctx: TxContext) -> ResultCode | None:
        data: tx2201.Data = ctx.input.data
        person = await fetch_person(ctx, data.psn_no)
        if person is None:
            return ctx.refuse(
                ResultCode.person_not_found, f"input.data.psn_no: {data.psn_no} not found"
            )
        refused = check_person_region(ctx, person)
        if refused is not None:
            return refused
        if person["insutype"] != data.insutype:
            return ctx.refuse(
                ResultCode.insutype_not_held,
                f"input.data.insutype: person is insured under {person['insutype']},"
                f" not {data.insutype}",
            )
        try:
            wire_datetime(data.begntime, "data.begntime")
        except MoneyError as exc:
            return ctx.refuse(ResultCode.field_invalid, money_message(exc, "input"))
        if person["psn_insu_stas"] != "1":
            return ctx.refuse(
                ResultCode.person_not_insured, "input.data.psn_no: insurance is not active"
            )
        return None

    async def commit(self, ctx: TxContext) -> None:
        data: tx2201.Data = ctx.input.data
        env = ctx.envelope
        seq = await ctx.conn.fetchval("SELECT nextval('mdtrt_id_seq')")
        mdtrt_id = f"{env.mdtrtarea_admvs}{ctx.now:%Y%m%d}{seq:012d}"
        await ctx.conn.execute(
            "INSERT INTO visits (mdtrt_id, psn_no, insuplc_admdvs, mdtrtarea_admvs, fixmedins_code,"
            " insutype, ipt_otp_no, mdtrt_cert_type, begntime, registration, state)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'registered')",
            mdtrt_id,
            data.psn_no,
            env.insuplc_admdvs,
            env.mdtrtarea_admvs,
            env.fixmedins_code,
            data.insutype,
            data.ipt_otp_no,
            data.mdtrt_cert_type,
            wire_datetime(data.begntime, "begntime"),  # checked in prepare
            msgspec.json.encode(data).decode(),
            timeout=ctx.services.command_timeout_s,
        )
        ctx.output = tx2201.Output(
            data=tx2201.RegOut(mdtrt_id=mdtrt_id, psn_no=data.psn_no, ipt_otp_no=data.ipt_otp_no)
        )


class GuardOutpatientNumber(Participant):
    """Refuse a second open visit with the same outpatient number before the insert
    would hit the unique index (the index still guards concurrent registrations)."""

    name: ClassVar[str] = "guard_outpatient_number"

    async def prepare(self, ctx: TxContext) -> ResultCode | None:
        data: tx2201.Data = ctx.input.data
        taken = await ctx.conn.fetchval(
            "SELECT true FROM visits WHERE fixmedins_code = $1 AND ipt_otp_no = $2"
            " AND state = 'registered'",
            ctx.envelope.fixmedins_code,
            data.ipt_otp_no,
            timeout=ctx.services.command_timeout_s,
        )
        if taken:
            return ctx.refuse(
                ResultCode.visit_outpatient_number_duplicate,
                f"input.data.ipt_otp_no: {data.ipt_otp_no} already has an open visit",
            )
        return None


SPEC = TxSpec(
    infno=tx2201.INFNO,
    name=tx2201.NAME,
    input_type=tx2201.Input,
    output_type=tx2201.Output,
    participants=(
        DecodeInput(tx2201.Input),
        RequireSignIn(),
        RequireInsuredRegion(),
        ClaimMsgid(),
        Register(),
        GuardOutpatientNumber(),
    ),
    mutating=True,
)
