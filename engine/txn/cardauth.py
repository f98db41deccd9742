"""Card and e-card authentication (DESIGN.md §4): the steps behind 9301 and 1101 by
social security card (`03`) and by e-card (`01`).

Invariants kept here:
- A challenge is issued only for a card in the issuer's record and is bound to the
  asking terminal and that card_sn; it is consumed by one atomic UPDATE (single use
  across every engine process, whatever the interleaving). A challenge presented by
  another terminal or for another card is `card_challenge_unknown` and is left
  unconsumed for its rightful holder.
- A challenge that matched is burned before the cryptogram is checked, so every
  challenge gets at most one check, and stays burned whatever the answer.
- Card keys never leave the HSM: the master is chosen by the card's generation in
  the `cards` table (3DES for 2, SM4 for 3), never by anything the terminal says.
- An e-card token id is burned only after its form, signature, validity window and
  id matched; a second use of the id is refused.
- 1101 runs without a database transaction, so each of these writes commits on its
  own: a refusal later in the pipeline does not bring a burned challenge or token back.
  Neither does an HSM failure after the burn (503): the terminal starts again at 9301.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

import asyncpg

from card import ecard
from engine import constants
from engine.hsm_runtime import timed
from engine.invariant import invariant
from engine.metrics import EngineMetrics
from engine.txn.context import Services, TxContext
from hsm.protocol import Hsm, KeyRef
from terminals.messages import tx1101
from terminals.results import ResultCode

T = TypeVar("T")


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
    """The engine's Services plus what card authentication needs (wired in
    engine.server): the HSM with its deadline, the key labels, the metrics."""

    hsm: Hsm
    hsm_deadline_s: float
    keys: CardKeyLabels
    metrics: EngineMetrics


def card_services(ctx: TxContext) -> CardAuthServices:
    services = ctx.services
    invariant(
        isinstance(services, CardAuthServices),
        "card authentication needs CardAuthServices (engine.server wires them)",
    )
    assert isinstance(services, CardAuthServices)  # for mypy; invariant() raised otherwise
    return services


async def hsm_call(ctx: TxContext, op: str, call: Awaitable[T]) -> T:
    """An HSM call timed and counted under yikatong_hsm_op_* by operation."""
    services = card_services(ctx)
    return await timed(services.metrics, services.hsm.backend, op, call)


async def fetch_card(ctx: TxContext, card_sn: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await ctx.conn.fetchrow(
        "SELECT card_sn, card_no, psn_no, generation, status, expiry_date"
        " FROM cards WHERE card_sn = $1",
        card_sn.upper(),
        timeout=ctx.services.command_timeout_s,
    )
    return row


async def insert_challenge(ctx: TxContext, card_sn: str) -> bytes:
    """A fresh challenge from the HSM's generator, stored for this terminal and card."""
    services = card_services(ctx)
    for _ in range(2):  # a 64-bit collision with a live challenge: draw once more
        challenge = await hsm_call(
            ctx,
            "random_bytes",
            services.hsm.random_bytes(
                constants.CARD_CHALLENGE_BYTES, deadline_s=services.hsm_deadline_s
            ),
        )
        stored = await ctx.conn.fetchval(
            "INSERT INTO card_challenges (challenge, terminal_id, card_sn, expires_at)"
            " VALUES ($1, $2, $3, now() + make_interval(secs => $4))"
            " ON CONFLICT DO NOTHING RETURNING true",
            challenge,
            ctx.terminal.terminal_id,
            card_sn.upper(),
            float(constants.CARD_CHALLENGE_TTL_S),
            timeout=ctx.services.command_timeout_s,
        )
        if stored:
            return challenge
    invariant(False, "the HSM's random generator repeated an 8-byte challenge twice")
    raise AssertionError("unreachable")


async def consume_challenge(ctx: TxContext, challenge: bytes, card_sn: str) -> ResultCode | None:
    """Burn the challenge if it is this terminal's, for this card, live and unused —
    in one statement; otherwise say which of those it is not."""
    timeout_s = ctx.services.command_timeout_s
    args = (challenge, ctx.terminal.terminal_id, card_sn.upper())
    consumed = await ctx.conn.fetchval(
        "UPDATE card_challenges SET used_at = now()"
        " WHERE challenge = $1 AND terminal_id = $2 AND card_sn = $3"
        " AND used_at IS NULL AND expires_at > now() RETURNING true",
        *args,
        timeout=timeout_s,
    )
    if consumed:
        return None
    row = await ctx.conn.fetchrow(
        "SELECT used_at IS NOT NULL AS used FROM card_challenges"
        " WHERE challenge = $1 AND terminal_id = $2 AND card_sn = $3",
        *args,
        timeout=timeout_s,
    )
    field = "input.data.yk_card_auth.challenge"
    if row is None:
        return ctx.refuse(
            ResultCode.card_challenge_unknown,
            f"{field}: not issued by 9301 to this terminal for this card_sn",
        )
    if row["used"]:
        return ctx.refuse(ResultCode.card_challenge_already_used, f"{field}: already used")
    return ctx.refuse(
        ResultCode.card_challenge_expired,
        f"{field}: expired ({constants.CARD_CHALLENGE_TTL_S} s); ask 9301 for a new one",
    )


def check_holder(
    ctx: TxContext, data: tx1101.Data, person: asyncpg.Record, what: str
) -> ResultCode | None:
    """psn_cert_type, certno and psn_name, when the request sends them, must be the
    person's that the credential names."""
    for name in ("psn_cert_type", "certno", "psn_name"):
        sent = getattr(data, name)
        if sent and sent != person[name]:
            return ctx.refuse(
                ResultCode.card_person_mismatch,
                f"input.data.{name}: is not the holder's of this {what}",
            )
    return None


async def authenticate_card(ctx: TxContext, data: tx1101.Data) -> asyncpg.Record | ResultCode:
    """1101 by card: the card's person, or the refusal (see the module docstring)."""
    auth = data.yk_card_auth
    if auth is None or not data.card_sn:
        missing = "card_sn" if not data.card_sn else "yk_card_auth"
        return ctx.refuse(
            ResultCode.auth_data_missing,
            f"input.data.{missing}: required when mdtrt_cert_type is 03",
        )
    card = await fetch_card(ctx, data.card_sn)
    if card is None:
        return ctx.refuse(ResultCode.card_unknown, "input.data.card_sn: no such card issued")
    challenge = bytes.fromhex(auth.challenge)
    refused = await consume_challenge(ctx, challenge, card["card_sn"])
    if refused is not None:
        return refused
    services = card_services(ctx)
    genuine = await hsm_call(
        ctx,
        "verify_card_cryptogram",
        services.hsm.verify_card_cryptogram(
            services.keys.internal(card["generation"]),
            bytes.fromhex(card["card_sn"]),
            bytes.fromhex(auth.process_factor),
            challenge,
            bytes.fromhex(auth.cryptogram),
            deadline_s=services.hsm_deadline_s,
        ),
    )
    if not genuine:
        return ctx.refuse(
            ResultCode.card_cryptogram_mismatch,
            "input.data.yk_card_auth.cryptogram: not this card's answer (clone or wrong data)",
        )
    if card["status"] != "active":
        return ctx.refuse(ResultCode.card_revoked, "input.data.card_sn: the card was revoked")
    if card["expiry_date"] < ctx.now.date():
        return ctx.refuse(
            ResultCode.card_expired,
            f"input.data.card_sn: the card expired on {card['expiry_date'].isoformat()}",
        )
    if data.mdtrt_cert_no != card["card_no"]:
        return ctx.refuse(
            ResultCode.card_person_mismatch,
            "input.data.mdtrt_cert_no: is not the number of the card with this card_sn",
        )
    person: asyncpg.Record | None = await ctx.conn.fetchrow(
        "SELECT * FROM persons WHERE psn_no = $1",
        card["psn_no"],
        timeout=ctx.services.command_timeout_s,
    )
    invariant(person is not None, "cards.psn_no references persons")
    assert person is not None
    mismatch = check_holder(ctx, data, person, "card")
    return person if mismatch is None else mismatch


def _token_refusal(ctx: TxContext, token: ecard.EcardToken, now_s: float) -> ResultCode | None:
    """The validity window: at most the protocol lifetime, and now inside it give or
    take the clock skew allowed."""
    p = token.payload
    field = "input.data.yk_ecard_qr"
    if p.exp - p.iat > constants.ECARD_TOKEN_LIFETIME_S_MAX:
        return ctx.refuse(
            ResultCode.ecard_token_malformed,
            f"{field}: valid for more than {constants.ECARD_TOKEN_LIFETIME_S_MAX} s",
        )
    skew = constants.ECARD_CLOCK_SKEW_S
    if now_s < p.iat - skew:
        return ctx.refuse(ResultCode.ecard_token_expired, f"{field}: not valid yet")
    if now_s > p.exp + skew:
        return ctx.refuse(ResultCode.ecard_token_expired, f"{field}: expired")
    return None


async def authenticate_ecard(ctx: TxContext, data: tx1101.Data) -> asyncpg.Record | ResultCode:
    """1101 by e-card: the token's person, or the refusal (see the module docstring)."""
    field = "input.data.yk_ecard_qr"
    if not data.yk_ecard_qr:
        return ctx.refuse(
            ResultCode.auth_data_missing, f"{field}: required when mdtrt_cert_type is 01"
        )
    try:
        token = ecard.decode_ecard_token(data.yk_ecard_qr)
    except ecard.EcardTokenError as exc:
        return ctx.refuse(ResultCode.ecard_token_malformed, f"{field}: {exc}")
    services = card_services(ctx)
    signed = await hsm_call(
        ctx,
        "verify_signature",
        services.hsm.verify_signature(
            services.keys.ecard_sign,
            token.signed_part,
            token.signature,
            deadline_s=services.hsm_deadline_s,
        ),
    )
    if not signed:
        return ctx.refuse(
            ResultCode.ecard_token_signature_invalid,
            f"{field}: not signed by the e-card platform",
        )
    refused = _token_refusal(ctx, token, ctx.now.timestamp())
    if refused is not None:
        return refused
    p = token.payload
    if data.mdtrt_cert_no != p.token_id:
        return ctx.refuse(
            ResultCode.ecard_token_id_mismatch,
            "input.data.mdtrt_cert_no: is not the id of the token in yk_ecard_qr",
        )
    burned = await ctx.conn.fetchval(
        "INSERT INTO ecard_tokens_used (token_id, expires_at) VALUES ($1, $2)"
        " ON CONFLICT DO NOTHING RETURNING true",
        p.token_id,
        dt.datetime.fromtimestamp(p.exp + constants.ECARD_CLOCK_SKEW_S, dt.UTC),
        timeout=ctx.services.command_timeout_s,
    )
    if not burned:
        return ctx.refuse(ResultCode.ecard_token_already_used, f"{field}: token already used")
    person: asyncpg.Record | None = await ctx.conn.fetchrow(
        "SELECT * FROM persons WHERE certno = $1",
        p.certno,
        timeout=ctx.services.command_timeout_s,
    )
    if person is None:
        return ctx.refuse(ResultCode.person_not_found, f"{field}: no insured person found")
    if person["psn_name"] != p.psn_name or person["insuplc_admdvs"] != p.insuplc_admdvs:
        return ctx.refuse(
            ResultCode.card_person_mismatch,
            f"{field}: name or insured region differs from the insured person's record",
        )
    mismatch = check_holder(ctx, data, person, "e-card")
    return person if mismatch is None else mismatch


async def purge_expired(
    conn: asyncpg.Connection, *, batch_max: int, grace_s: float, timeout_s: float
) -> int:
    """Delete at most `batch_max` challenges and `batch_max` burned token ids that
    expired more than `grace_s` ago; return how many rows went."""
    deleted = 0
    for table in ("card_challenges", "ecard_tokens_used"):
        key = "challenge" if table == "card_challenges" else "token_id"
        status = await conn.execute(
            f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table}"
            " WHERE expires_at < now() - make_interval(secs => $1) LIMIT $2)",
            float(grace_s),
            batch_max,
            timeout=timeout_s,
        )
        deleted += int(status.rsplit(" ", 1)[1])
    return deleted
