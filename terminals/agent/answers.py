"""The agent's JSON answers, rendered in one place.

Success answers carry `request_id`; a card or e-card identification also carries the
engine's card proof as top-level `cred_ref` and `cred_expires_at` (null when the
engine gave none), which the HIS puts into its 2201 / 2207 as `data.yk_cred_ref`.
Errors are `{"error": {source, code, result, message[, tries_left]}, "request_id"}`,
with Retry-After on the answers a client may simply retry (results.RETRYABLE).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
from aiohttp import web

from card.ssse import CardBasics, CardHolder
from terminals.agent import limits
from terminals.agent.results import RETRYABLE, AgentError
from terminals.messages.card import person_info as person_info_msg


def _date(value: dt.date) -> str:
    return value.isoformat()


def basics_json(b: CardBasics) -> dict[str, Any]:
    return {
        "card_sn": b.card_sn,
        "card_no": b.card_no,
        "region": b.region,
        "card_type": b.card_type,
        "spec_version": b.spec_version,
        "generation": b.generation,
        "algorithm": b.algorithm.name,
        "init_org": b.init_org,
        "issue_date": _date(b.issue_date),
        "expiry_date": _date(b.expiry_date),
        "atr": b.atr.hex().upper(),
    }


def holder_json(h: CardHolder) -> dict[str, Any]:
    return {
        "certno": h.certno,
        "name": h.name,
        "gender": h.gender,
        "nation": h.nation,
        "birthplace": h.birthplace,
        "birth_date": _date(h.birth_date),
    }


def person_json(person: person_info_msg.Output) -> dict[str, Any]:
    """The 1101 answer without its card proof, plus the proof as top-level fields."""
    proof = person.yk_card_proof
    body = msgspec.to_builtins(msgspec.structs.replace(person, yk_card_proof=None))
    body.pop("yk_card_proof", None)
    return {
        "person": body,
        "cred_ref": None if proof is None else proof.cred_ref,
        "cred_expires_at": None if proof is None else proof.expires_at,
    }


def json_response(payload: object, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(payload), status=status, content_type="application/json"
    )


def error_response(
    exc: AgentError, request_id: str, headers: dict[str, str] | None = None
) -> web.Response:
    error: dict[str, Any] = {
        "source": exc.source.value,
        "code": exc.code,
        "result": exc.result,
        "message": exc.message,
    }
    if exc.tries_left is not None:
        error["tries_left"] = exc.tries_left
    response = json_response({"error": error, "request_id": request_id}, exc.http_status)
    if exc.result in RETRYABLE:
        response.headers["Retry-After"] = str(limits.RETRY_AFTER_S)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
