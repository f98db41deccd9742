"""1101 person info: finds the insured person by credential and answers baseinfo and
insuinfo — by ID number (02), by social security card (03, authenticated with a 9301
challenge and the card's cryptogram) or by e-card (01, a platform-signed QR token);
the steps of 03 and 01 are in engine.txn.cardauth.

Read-only in the protocol's sense (no msgid claim, no transaction), which is what
lets a burned challenge or token id stay burned when the answer is a refusal. Every
outcome after sign-in is counted in yikatong_card_auth_total{method, result}.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ClassVar

import asyncpg

from engine.hsm_runtime import result_code_for
from engine.txn.cardauth import authenticate_card, authenticate_ecard, card_services
from engine.txn.common import DecodeInput, RequireSignIn
from engine.txn.context import TxContext
from engine.txn.people import base_info, insu_info
from engine.txn.pipeline import Participant, TxSpec
from hsm.errors import HsmError
from terminals.messages import tx1101
from terminals.results import ResultCode

Identify = Callable[[TxContext, tx1101.Data], Awaitable[asyncpg.Record | ResultCode]]


async def by_id_number(ctx: TxContext, data: tx1101.Data) -> asyncpg.Record | ResultCode:
    person: asyncpg.Record | None = await ctx.conn.fetchrow(
        "SELECT * FROM persons WHERE certno = $1",
        data.mdtrt_cert_no,
        timeout=ctx.services.command_timeout_s,
    )
    if person is None:
        return ctx.refuse(
            ResultCode.person_not_found, "input.data.mdtrt_cert_no: no insured person found"
        )
    return person


# mdtrt_cert_type -> (metric method label, how the person is found)
METHODS: dict[str, tuple[str, Identify]] = {
    tx1101.CERT_TYPE_ECARD: ("ecard", authenticate_ecard),
    tx1101.CERT_TYPE_ID_NUMBER: ("certno", by_id_number),
    tx1101.CERT_TYPE_CARD: ("card", authenticate_card),
}


def _stray_extension(ctx: TxContext, data: tx1101.Data) -> ResultCode | None:
    """Each extension belongs to one credential type; elsewhere it is a field error."""
    if data.yk_card_auth is not None and data.mdtrt_cert_type != tx1101.CERT_TYPE_CARD:
        return ctx.refuse(
            ResultCode.field_invalid, "input.data.yk_card_auth: only with mdtrt_cert_type 03"
        )
    if data.yk_ecard_qr and data.mdtrt_cert_type != tx1101.CERT_TYPE_ECARD:
        return ctx.refuse(
            ResultCode.field_invalid, "input.data.yk_ecard_qr: only with mdtrt_cert_type 01"
        )
    return None


class FindPerson(Participant):
    name: ClassVar[str] = "find_person"

    async def prepare(self, ctx: TxContext) -> ResultCode | None:
        data: tx1101.Data = ctx.input.data
        method, identify = METHODS[data.mdtrt_cert_type]  # CertType allows only these
        code = _stray_extension(ctx, data)
        if code is None:
            try:
                found = await identify(ctx, data)
            except HsmError as exc:
                self._count(ctx, method, result_code_for(exc))
                raise  # answered 503 by the endpoint
            if isinstance(found, ResultCode):
                code = found
            else:
                ctx.output = tx1101.Output(
                    baseinfo=base_info(found, ctx.now.date()),
                    insuinfo=[insu_info(found)],
                    idetinfo=[],
                )
        self._count(ctx, method, ResultCode.ok if code is None else code)
        return code

    @staticmethod
    def _count(ctx: TxContext, method: str, outcome: ResultCode) -> None:
        card_services(ctx).metrics.card_auth_total.labels(method, outcome.name).inc()


SPEC = TxSpec(
    infno=tx1101.INFNO,
    name=tx1101.NAME,
    input_type=tx1101.Input,
    output_type=tx1101.Output,
    participants=(DecodeInput(tx1101.Input), RequireSignIn(), FindPerson()),
    mutating=False,
)
