"""9301 card challenge: a single-use challenge for the card's INTERNAL AUTHENTICATE,
bound to this terminal and card, and — for cards that need it (generation 3) — the
EXTERNAL AUTHENTICATE cryptogram from the HSM under the card's external key.

Not state-changing in the protocol's sense (no msgid claim, no transaction): the
challenge row commits on its own, and a repeated request simply gets a fresh
challenge while the earlier one expires unused. The card must be in the issuer's
record; its status and expiry are judged at 1101, after the card has proved itself.
"""

from __future__ import annotations

from typing import ClassVar

from engine import constants
from engine.txn.cardauth import card_services, fetch_card, hsm_call, insert_challenge
from engine.txn.common import DecodeInput, RequireSignIn
from engine.txn.context import TxContext
from engine.txn.pipeline import Participant, TxSpec
from terminals.messages import tx9301
from terminals.results import ResultCode


class IssueChallenge(Participant):
    name: ClassVar[str] = "issue_challenge"

    async def prepare(self, ctx: TxContext) -> ResultCode | None:
        data: tx9301.Data = ctx.input.data
        if bool(data.ext_process_factor) != bool(data.ext_challenge):
            return ctx.refuse(
                ResultCode.field_invalid,
                "input.data.ext_challenge: ext_process_factor and ext_challenge go together",
            )
        card = await fetch_card(ctx, data.card_sn)
        if card is None:
            return ctx.refuse(ResultCode.card_unknown, "input.data.card_sn: no such card issued")
        ctx.data = card
        return None

    async def commit(self, ctx: TxContext) -> None:
        data: tx9301.Data = ctx.input.data
        card = ctx.data
        ext_cryptogram = ""
        if data.ext_process_factor:
            services = card_services(ctx)
            ext = await hsm_call(
                ctx,
                "external_auth_cryptogram",
                services.hsm.external_auth_cryptogram(
                    services.keys.external(card["generation"]),
                    bytes.fromhex(card["card_sn"]),
                    bytes.fromhex(data.ext_process_factor),
                    bytes.fromhex(data.ext_challenge),
                    deadline_s=services.hsm_deadline_s,
                ),
            )
            ext_cryptogram = ext.hex().upper()
        challenge = await insert_challenge(ctx, card["card_sn"])
        ctx.output = tx9301.Output(
            challenge=challenge.hex().upper(),
            expires_in_s=constants.CARD_CHALLENGE_TTL_S,
            ext_cryptogram=ext_cryptogram,
        )


SPEC = TxSpec(
    infno=tx9301.INFNO,
    name=tx9301.NAME,
    input_type=tx9301.Input,
    output_type=tx9301.Output,
    participants=(DecodeInput(tx9301.Input), RequireSignIn(), IssueChallenge()),
    mutating=False,
)
