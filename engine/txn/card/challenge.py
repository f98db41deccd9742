"""9301 card challenge (INFNO 9301): a single-use challenge for the card's INTERNAL
AUTHENTICATE, valid 60 s and bound to this terminal and card, and — for cards that need
it (generation 3) — the EXTERNAL AUTHENTICATE cryptogram from the HSM under the card's
external key.

BEGIN, the load (the card), the HSM (engine.txn.card.proofs), the decision
(settlement.cards.decide_challenge), the write (the challenge row) + COMMIT. No msgid
is claimed: a repeated request gets a fresh challenge, and the earlier one expires
unused. The card must be in the issuer's record; its status and expiry are judged at
1101, after the card has proved itself.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from engine.txn.card import proofs
from engine.txn.card.services import LIMITS
from engine.txn.context import TxContext
from engine.txn.flow import Flow
from settlement.cards import (
    ChallengeDecision,
    ChallengeLoad,
    ChallengeRequest,
    decide_challenge,
    ext_pairing_refusal,
    known_card,
)
from settlement.refusals import Refused
from terminals.messages.card import challenge as challenge_msg

INFNO = challenge_msg.INFNO


class IssueChallenge(Flow[ChallengeRequest, ChallengeLoad, ChallengeDecision]):
    load_function: ClassVar[str] = "yk_load_card_challenge"
    write_function: ClassVar[str | None] = "yk_write_card_challenge"
    load_type = ChallengeLoad

    def request(self, ctx: TxContext, inp: Any) -> ChallengeRequest | Refused:
        data: challenge_msg.Data = inp.data
        bad = ext_pairing_refusal(data.ext_process_factor, data.ext_challenge)
        if bad is not None:
            return bad
        return ChallengeRequest(
            card_sn=data.card_sn.upper(),
            terminal_id=ctx.terminal.terminal_id,
            ext_process_factor=bytes.fromhex(data.ext_process_factor),
            ext_challenge=bytes.fromhex(data.ext_challenge),
        )

    def load_args(self, ctx: TxContext, req: ChallengeRequest) -> tuple[Any, ...]:
        return (req.card_sn,)

    async def prove(
        self, ctx: TxContext, req: ChallengeRequest, load: ChallengeLoad
    ) -> ChallengeLoad:
        card = known_card(load)
        if isinstance(card, Refused):
            return load  # decide refuses it; the HSM is not asked
        return msgspec.structs.replace(load, drawn=await proofs.draw_challenge(ctx, card, req))

    def decide(
        self, ctx: TxContext, req: ChallengeRequest, load: ChallengeLoad
    ) -> ChallengeDecision | Refused:
        return decide_challenge(req, load, ctx.now, LIMITS)

    def output(
        self, ctx: TxContext, req: ChallengeRequest, load: ChallengeLoad, d: ChallengeDecision
    ) -> challenge_msg.Output:
        return challenge_msg.Output(
            challenge=d.challenge.hex().upper(),
            expires_in_s=LIMITS.challenge_ttl_s,
            ext_cryptogram=d.ext_cryptogram.hex().upper(),
        )

    def write_doc(
        self,
        ctx: TxContext,
        req: ChallengeRequest,
        load: ChallengeLoad,
        d: ChallengeDecision,
        output: Any,
    ) -> dict[str, Any]:
        return {
            "challenge": {
                "challenge": d.challenge.hex(),
                "terminal_id": d.terminal_id,
                "card_sn": d.card_sn,
                "created_at": d.created_at.isoformat(),
                "expires_at": d.expires_at.isoformat(),
            }
        }


FLOW = IssueChallenge()
