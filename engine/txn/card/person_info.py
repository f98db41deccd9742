"""1101 人员信息获取 person info (INFNO 1101): finds the insured person by credential and
answers baseinfo and insuinfo — by ID number (02), by social security card (03,
authenticated with a 9301 challenge and the card's cryptogram) or by e-card (01, a
platform-signed QR token).

BEGIN, the load (the person; for a card the card and the presented challenge, locked;
for an e-card whether its id was spent), the HSM's verdict (engine.txn.card.proofs),
the decision (settlement.cards.decide_person_info), the write + COMMIT; by ID number,
which spends nothing, the load alone in autocommit. The write
spends the challenge or the token id — also for the refusals that must spend it
(`spent_refusal`), so a refused card keeps its challenge burned and a replay cannot
reuse it. A success by card or e-card also writes the card proof (settlement/proofs.py)
that the answer's `yk_card_proof.cred_ref` names and 2201 / 2207 must carry; its
reference is drawn from `Services.random_hex`. No msgid is claimed: a credential is
single use by itself. Every outcome
after the input was decoded is counted in yikatong_card_auth_total{method, result},
HSM errors too (then answered 503 by the endpoint).
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from card import ecard
from engine import constants
from engine.hsm_runtime import result_code_for
from engine.invariant import InvariantViolation
from engine.txn.card import proofs
from engine.txn.card.services import LIMITS, count_auth
from engine.txn.context import TxContext
from engine.txn.flow import Flow
from engine.txn.people import base_info, insu_info
from hsm.errors import HsmError
from settlement.cards import (
    ECARD_QR,
    CardAnswer,
    EcardClaims,
    PersonInfoDecision,
    PersonInfoLoad,
    PersonInfoRequest,
    credential_refusal,
    decide_person_info,
)
from settlement.proofs import Credential
from settlement.refusals import Refusal, Refused
from terminals.messages.card import person_info as person_info_msg
from terminals.results import ResultCode

INFNO = person_info_msg.INFNO


def domain_request(
    data: person_info_msg.Data, terminal_id: str, fixmedins_code: str = ""
) -> PersonInfoRequest | Refused:
    """The wire's 1101 data as the domain's request; a stray or missing extension and an
    e-card token that is not well formed are refused here, before any I/O."""
    credential = Credential(data.mdtrt_cert_type)  # the CertType pattern allows only these
    auth = data.yk_card_auth
    bad = credential_refusal(
        credential,
        card_sn=data.card_sn,
        card_auth=auth is not None,
        ecard_qr=bool(data.yk_ecard_qr),
    )
    if bad is not None:
        return bad
    card: CardAnswer | None = None
    if credential is Credential.card and auth is not None:
        card = CardAnswer(
            data.card_sn.upper(),
            bytes.fromhex(auth.challenge),
            bytes.fromhex(auth.process_factor),
            bytes.fromhex(auth.cryptogram),
        )
    claims: EcardClaims | None = None
    if credential is Credential.ecard:
        decoded = ecard_claims(data.yk_ecard_qr)
        if isinstance(decoded, Refused):
            return decoded
        claims = decoded
    return PersonInfoRequest(
        credential=credential,
        mdtrt_cert_no=data.mdtrt_cert_no,
        terminal_id=terminal_id,
        fixmedins_code=fixmedins_code,
        psn_cert_type=data.psn_cert_type,
        certno=data.certno,
        psn_name=data.psn_name,
        card=card,
        ecard=claims,
    )


def ecard_claims(qr: str) -> EcardClaims | Refused:
    """The QR text decoded once (card.ecard checks its form; the HSM, its signature)."""
    try:
        token = ecard.decode_ecard_token(qr)
    except ecard.EcardTokenError as exc:
        return Refused(Refusal.ecard_token_malformed, f"{ECARD_QR}: {exc}")
    p = token.payload
    return EcardClaims(
        token_id=p.token_id,
        certno=p.certno,
        psn_name=p.psn_name,
        insuplc_admdvs=p.insuplc_admdvs,
        iat=p.iat,
        exp=p.exp,
        signed_part=token.signed_part,
        signature=token.signature,
    )


class PersonInfo(Flow[PersonInfoRequest, PersonInfoLoad, PersonInfoDecision]):
    load_function: ClassVar[str] = "yk_load_person_info"
    write_function: ClassVar[str | None] = "yk_write_person_info"
    load_type = PersonInfoLoad

    def request(self, ctx: TxContext, inp: Any) -> PersonInfoRequest | Refused:
        data: person_info_msg.Data = inp.data
        req = domain_request(data, ctx.terminal.terminal_id, ctx.terminal.fixmedins_code)
        if isinstance(req, Refused):
            count_auth(ctx, Credential(data.mdtrt_cert_type).name, req)
        return req

    def writes(self, req: PersonInfoRequest) -> bool:
        """By ID number nothing is spent: the load alone, in autocommit (1 round trip)."""
        return req.card is not None or req.ecard is not None

    def load_args(self, ctx: TxContext, req: PersonInfoRequest) -> tuple[Any, ...]:
        """(certno to find the person by, card_sn, challenge as hex, e-card token id)."""
        if req.ecard is not None:
            return (req.ecard.certno, "", "", req.ecard.token_id)
        if req.card is not None:
            return ("", req.card.card_sn, req.card.challenge.hex(), "")
        return (req.mdtrt_cert_no, "", "", "")

    async def prove(
        self, ctx: TxContext, req: PersonInfoRequest, load: PersonInfoLoad
    ) -> PersonInfoLoad:
        try:
            genuine = await proofs.verdict(ctx, req, load)
        except HsmError as exc:
            count_auth(ctx, req.credential.name, result_code_for(exc))
            raise
        return load if genuine is None else msgspec.structs.replace(load, genuine=genuine)

    def decide(
        self, ctx: TxContext, req: PersonInfoRequest, load: PersonInfoLoad
    ) -> PersonInfoDecision | Refused:
        # A proof only for a card or e-card: 1101 by ID number draws nothing.
        cred_ref = (
            ""
            if req.credential is Credential.certno
            else ctx.services.random_hex(constants.CARD_PROOF_REF_BYTES)
        )
        decision = decide_person_info(req, load, ctx.now, LIMITS, cred_ref)
        if isinstance(decision, Refused):
            count_auth(ctx, req.credential.name, decision)
        else:
            count_auth(ctx, req.credential.name, decision.refusal or ResultCode.ok)
        return decision

    def spent_refusal(self, decision: PersonInfoDecision) -> Refused | None:
        return decision.refusal

    def output(
        self, ctx: TxContext, req: PersonInfoRequest, load: PersonInfoLoad, d: PersonInfoDecision
    ) -> person_info_msg.Output:
        if d.person is None:
            raise InvariantViolation("a 1101 answered without its person")
        proof = None
        if d.proof is not None:
            proof = person_info_msg.CardProof(
                cred_ref=d.proof.cred_ref, expires_at=f"{d.proof.expires_at:%Y-%m-%d %H:%M:%S}"
            )
        return person_info_msg.Output(
            baseinfo=base_info(d.person, ctx.now.date()),
            insuinfo=[insu_info(d.person)],
            idetinfo=[],
            yk_card_proof=proof,
        )

    def write_doc(
        self,
        ctx: TxContext,
        req: PersonInfoRequest,
        load: PersonInfoLoad,
        d: PersonInfoDecision,
        output: Any,
    ) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if d.challenge_burn is not None:
            c = d.challenge_burn
            doc["challenge_burn"] = {
                "challenge": c.challenge.hex(),
                "used_at": c.used_at.isoformat(),
            }
        if d.token_burn is not None:
            t = d.token_burn
            doc["token_burn"] = {
                "token_id": t.token_id,
                "used_at": t.used_at.isoformat(),
                "expires_at": t.expires_at.isoformat(),
            }
        if d.proof is not None:
            p = d.proof
            doc["card_proof"] = {
                "cred_ref": p.cred_ref,
                "credential": p.credential.value,
                "psn_no": p.psn_no,
                "insuplc_admdvs": p.insuplc_admdvs,
                "terminal_id": p.terminal_id,
                "fixmedins_code": p.fixmedins_code,
                "card_sn": p.card_sn or None,
                "created_at": p.created_at.isoformat(),
                "expires_at": p.expires_at.isoformat(),
            }
        return doc


FLOW = PersonInfo()
