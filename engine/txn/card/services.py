"""What card authentication needs besides the database (wired in engine.server): the
HSM with its deadline, the card and e-card key labels, the metrics — and the one place
that counts an authentication in yikatong_card_auth_total{method, result}."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from engine import constants
from engine.hsm_runtime import HsmOp, timed
from engine.invariant import InvariantViolation
from engine.metrics import EngineMetrics
from engine.txn.context import Services, TxContext
from engine.txn.refusal_codes import REFUSAL_CODES
from hsm.protocol import Hsm, KeyRef
from settlement.cards import CardLimits
from settlement.refusals import Refused
from terminals.results import ResultCode

T = TypeVar("T")

LIMITS = CardLimits(
    challenge_ttl_s=constants.CARD_CHALLENGE_TTL_S,
    ecard_lifetime_s_max=constants.ECARD_TOKEN_LIFETIME_S_MAX,
    ecard_clock_skew_s=constants.ECARD_CLOCK_SKEW_S,
    card_proof_ttl_s=constants.CARD_PROOF_TTL_S,
)


@dataclass(frozen=True)
class CardKeyLabels:
    int_3des: KeyRef
    int_sm4: KeyRef
    ext_3des: KeyRef
    ext_sm4: KeyRef
    ecard_sign: KeyRef

    def internal(self, generation: int) -> KeyRef:
        return self.int_sm4 if generation == 3 else self.int_3des

    def external(self, generation: int) -> KeyRef:
        return self.ext_sm4 if generation == 3 else self.ext_3des


@dataclass(frozen=True)
class CardAuthServices(Services):
    """The engine's Services plus what card authentication needs."""

    hsm: Hsm
    hsm_deadline_s: float
    keys: CardKeyLabels
    metrics: EngineMetrics


def card_services(ctx: TxContext) -> CardAuthServices:
    services = ctx.services
    if not isinstance(services, CardAuthServices):
        raise InvariantViolation(
            "card authentication needs CardAuthServices (engine.server wires them)"
        )
    return services


async def hsm_call(ctx: TxContext, op: HsmOp, call: Awaitable[T]) -> T:
    """An HSM call timed and counted under yikatong_hsm_op_* by operation."""
    services = card_services(ctx)
    return await timed(services.metrics, services.hsm.backend, op, call)


def count_auth(ctx: TxContext, method: str, result: ResultCode | Refused) -> None:
    """One 1101 identification by `method` (a settlement.proofs.Credential name: card,
    ecard, certno) and its result."""
    code = REFUSAL_CODES[result.reason] if isinstance(result, Refused) else result
    card_services(ctx).metrics.count_card_auth(method, code)
