"""The audit trail: one log line per card flow (`/v1/card`, `/v1/person-info`,
`/v1/ecard`) and one per refused request, on the `terminals.agent.audit` logger.

A line says which endpoint, which request (the request id the client sees in
`X-Request-Id`), how it ended (source, code and name of the result, or `ok`), whether
this agent required a PIN and whether one was verified in the flow, and how long it
took. It never holds personal data: no ID number, name, card number, card serial, PIN,
token or key — the fields are built only from the values below, never from the
request body, the card or the engine's answer. The same fields go out as structured
`extra={"fields": ...}` (engine.logs' JSON lines) and, for plain formatters, in the
message itself.
"""

from __future__ import annotations

import logging

from terminals.agent.results import AgentError

log = logging.getLogger("terminals.agent.audit")

OK = "ok"


def _line(fields: dict[str, object]) -> None:
    text = " ".join(f"{key}={value}" for key, value in fields.items())
    log.info("audit %s", text, extra={"fields": fields})


def card_flow(
    endpoint: str,
    request_id: str,
    outcome: AgentError | None,
    *,
    pin_required: bool,
    pin_verified: bool,
    elapsed_ms: float,
) -> None:
    _line(
        {
            "event": "card_flow",
            "endpoint": endpoint,
            "request_id": request_id,
            "source": "-" if outcome is None else outcome.source.value,
            "code": 0 if outcome is None else outcome.code,
            "result": OK if outcome is None else outcome.result,
            "pin_required": pin_required,
            "pin_verified": pin_verified,
            "elapsed_ms": round(elapsed_ms, 1),
        }
    )


def refused(endpoint: str, request_id: str, outcome: AgentError) -> None:
    """A request refused before any card flow (authentication, Host, origin, body)."""
    _line(
        {
            "event": "refused",
            "endpoint": endpoint,
            "request_id": request_id,
            "source": outcome.source.value,
            "code": outcome.code,
            "result": outcome.result,
        }
    )
