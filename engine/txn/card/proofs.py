"""The HSM's part of 9301 and 1101, between their load and their decision: card keys
never leave the HSM, and the key is chosen by the card's generation in the issuer's
record (3DES for 2, SM4 for 3), never by anything the terminal says.

Each function is asked only what the decision needs: nothing for an unknown card or a
challenge that cannot be used (settlement.cards says which), so a bad request costs no
HSM call and gives no verdict.
"""

from __future__ import annotations

from engine import constants
from engine.txn.card.services import LIMITS, card_services, hsm_call
from engine.txn.context import TxContext
from settlement.cards import (
    Card,
    CardAnswer,
    ChallengeRequest,
    DrawnChallenge,
    EcardClaims,
    PersonInfoLoad,
    PersonInfoRequest,
    usable_challenge,
)
from settlement.proofs import Credential
from settlement.refusals import Refused


async def draw_challenge(ctx: TxContext, card: Card, req: ChallengeRequest) -> DrawnChallenge:
    """9301: the EXTERNAL AUTHENTICATE cryptogram when the card's values came, and a
    fresh challenge from the HSM's generator."""
    services = card_services(ctx)
    ext = b""
    if req.ext_process_factor:
        ext = await hsm_call(
            ctx,
            "external_auth_cryptogram",
            services.hsm.external_auth_cryptogram(
                services.keys.external(card.generation),
                bytes.fromhex(card.card_sn),
                req.ext_process_factor,
                req.ext_challenge,
                deadline_s=ctx.db.within(services.hsm_deadline_s),
            ),
        )
    challenge = await hsm_call(
        ctx,
        "random_bytes",
        services.hsm.random_bytes(
            constants.CARD_CHALLENGE_BYTES, deadline_s=ctx.db.within(services.hsm_deadline_s)
        ),
    )
    return DrawnChallenge(challenge, ext)


async def card_genuine(ctx: TxContext, card: Card, answer: CardAnswer) -> bool:
    """1101 by card: is the cryptogram this card's INTERNAL AUTHENTICATE answer?"""
    services = card_services(ctx)
    return await hsm_call(
        ctx,
        "verify_card_cryptogram",
        services.hsm.verify_card_cryptogram(
            services.keys.internal(card.generation),
            bytes.fromhex(card.card_sn),
            answer.process_factor,
            answer.challenge,
            answer.cryptogram,
            deadline_s=ctx.db.within(services.hsm_deadline_s),
        ),
    )


async def token_signed(ctx: TxContext, claims: EcardClaims) -> bool:
    """1101 by e-card: did the e-card platform sign this token?"""
    services = card_services(ctx)
    return await hsm_call(
        ctx,
        "verify_signature",
        services.hsm.verify_signature(
            services.keys.ecard_sign,
            claims.signed_part,
            claims.signature,
            deadline_s=ctx.db.within(services.hsm_deadline_s),
        ),
    )


async def verdict(ctx: TxContext, req: PersonInfoRequest, load: PersonInfoLoad) -> bool | None:
    """1101: the HSM's verdict on the credential, or None when there is nothing to ask
    (an ID number; a card whose challenge is refused before any check)."""
    if req.credential is Credential.card and req.card is not None:
        usable = usable_challenge(req, load, ctx.now, LIMITS)
        if isinstance(usable, Refused):
            return None
        card, _ = usable
        return await card_genuine(ctx, card, req.card)
    if req.credential is Credential.ecard and req.ecard is not None:
        return await token_signed(ctx, req.ecard)
    return None
