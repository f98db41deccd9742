"""Participants shared by many transaction codes, and small helpers for field errors
and rows. Transaction-specific participants live in their own module."""

from __future__ import annotations

import re
from typing import Any, ClassVar

import asyncpg
import msgspec

from engine.txn.context import TxContext
from engine.txn.pipeline import Participant
from terminals.envelope import INPUT_CHARS_MAX
from terminals.results import ResultCode

_PATH_RE = re.compile(r"^(.*?)(?: - at `\$\.?(.*)`)?$", re.DOTALL)


def field_message(exc: msgspec.ValidationError, prefix: str) -> str:
    """'Expected `str` of length <= 30 - at `$.data.psn_no`' -> 'input.data.psn_no: ...'."""
    match = _PATH_RE.match(str(exc))
    reason, path = (match.group(1), match.group(2)) if match else (str(exc), "")
    missing = re.match(r"Object missing required field `([^`]+)`", reason)
    if missing:
        path = f"{path}.{missing.group(1)}" if path else missing.group(1)
        reason = "required field missing"
    unknown = re.match(r"Object contains unknown field `([^`]+)`", reason)
    if unknown:
        path = f"{path}.{unknown.group(1)}" if path else unknown.group(1)
        reason = "unknown field"
    full = ".".join(p for p in (prefix, path) if p)
    return f"{full}: {reason[:1].lower()}{reason[1:]}"


class DecodeInput(Participant):
    """Decode `input` into the transaction's Struct; a bad field names itself."""

    name: ClassVar[str] = "decode_input"

    def __init__(self, input_type: type[Any]) -> None:
        self._decoder = msgspec.json.Decoder(input_type)

    async def prepare(self, ctx: TxContext) -> ResultCode | None:
        raw = bytes(ctx.envelope.input)
        if len(raw) > INPUT_CHARS_MAX * 4 or len(raw.decode("utf-8")) > INPUT_CHARS_MAX:
            return ctx.refuse(
                ResultCode.field_invalid, f"input: longer than {INPUT_CHARS_MAX} characters"
            )
        try:
            ctx.input = self._decoder.decode(raw)
        except msgspec.ValidationError as exc:
            return ctx.refuse(ResultCode.field_invalid, field_message(exc, "input"))
        return None


class RequireSignIn(Participant):
    """Every call but 9001 carries the `sign_no` of an open sign-in of this operator at
    this institution."""

    name: ClassVar[str] = "require_sign_in"

    async def prepare(self, ctx: TxContext) -> ResultCode | None:
        env = ctx.envelope
        if not env.sign_no:
            return ctx.refuse(ResultCode.sign_in_required, "sign_no: required; sign in with 9001")
        row = await ctx.conn.fetchrow(
            "SELECT opter, signed_out_at FROM sign_ins WHERE sign_no = $1 AND fixmedins_code = $2",
            env.sign_no,
            env.fixmedins_code,
            timeout=ctx.services.command_timeout_s,
        )
        if row is None:
            return ctx.refuse(
                ResultCode.sign_no_unknown, f"sign_no: {env.sign_no} is not known here"
            )
        if row["signed_out_at"] is not None:
            return ctx.refuse(
                ResultCode.sign_no_signed_out, f"sign_no: {env.sign_no} is signed out"
            )
        if row["opter"] != env.opter:
            return ctx.refuse(
                ResultCode.operator_not_signed_in,
                f"opter: {env.opter} did not sign in as {env.sign_no}",
            )
        return None


class ClaimMsgid(Participant):
    """Idempotency: claim (fixmedins_code, msgid) in this database transaction.

    A concurrent identical request waits on the row's unique key until this one ends.
    If the msgid was used before, an identical body gets the stored answer back and a
    different body is refused; nothing else runs."""

    name: ClassVar[str] = "claim_msgid"

    async def prepare(self, ctx: TxContext) -> ResultCode | None:
        env = ctx.envelope
        claimed = await ctx.conn.fetchval(
            "INSERT INTO tx_log (fixmedins_code, msgid, infno, request_sha256) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT DO NOTHING RETURNING true",
            env.fixmedins_code,
            env.msgid,
            env.infno,
            ctx.request_sha256,
            timeout=ctx.services.command_timeout_s,
        )
        if claimed:
            return None
        row = await ctx.conn.fetchrow(
            "SELECT infno, request_sha256, answer, reversed_by_msgid FROM tx_log"
            " WHERE fixmedins_code = $1 AND msgid = $2",
            env.fixmedins_code,
            env.msgid,
            timeout=ctx.services.command_timeout_s,
        )
        if row is not None and row["reversed_by_msgid"] is not None:
            return ctx.refuse(
                ResultCode.msgid_reversed,
                f"msgid: {env.msgid} was reversed by 2601 {row['reversed_by_msgid']}",
            )
        if (
            row is None
            or row["infno"] != env.infno
            or row["request_sha256"] != ctx.request_sha256
            or row["answer"] is None
        ):
            return ctx.refuse(
                ResultCode.msgid_reused_with_different_body,
                f"msgid: {env.msgid} was already used for a different request",
            )
        ctx.replayed_answer = bytes(row["answer"])
        return None


class RequireInsuredRegion(Participant):
    """Calls about a person carry `insuplc_admdvs` (DOMAIN.md §2.2)."""

    name: ClassVar[str] = "require_insured_region"

    async def prepare(self, ctx: TxContext) -> ResultCode | None:
        if not ctx.envelope.insuplc_admdvs:
            return ctx.refuse(
                ResultCode.field_invalid, "insuplc_admdvs: required when the input names a person"
            )
        return None


async def fetch_person(ctx: TxContext, psn_no: str, *, lock: bool = False) -> asyncpg.Record | None:
    sql = "SELECT * FROM persons WHERE psn_no = $1" + (" FOR UPDATE" if lock else "")
    row: asyncpg.Record | None = await ctx.conn.fetchrow(
        sql, psn_no, timeout=ctx.services.command_timeout_s
    )
    return row


def check_person_region(ctx: TxContext, person: asyncpg.Record) -> ResultCode | None:
    if person["insuplc_admdvs"] != ctx.envelope.insuplc_admdvs:
        return ctx.refuse(
            ResultCode.person_region_mismatch,
            f"insuplc_admdvs: {ctx.envelope.insuplc_admdvs} is not the insured region of"
            f" psn_no {person['psn_no']}",
        )
    return None


async def fetch_visit(
    ctx: TxContext, mdtrt_id: str, *, lock: bool = False
) -> asyncpg.Record | None:
    sql = "SELECT * FROM visits WHERE mdtrt_id = $1" + (" FOR UPDATE" if lock else "")
    row: asyncpg.Record | None = await ctx.conn.fetchrow(
        sql, mdtrt_id, timeout=ctx.services.command_timeout_s
    )
    return row
