"""The card agent's answers to failure: one exception, `AgentError`, naming where the
failure came from (`ErrorSource`), its stable number and its stable name.

A kiosk maps `error.result` (the name) to a sentence (docs/CARD_AGENT.md has the
table). Names and numbers never change; new outcomes get new members.

- `card`: the card or the reader refused or failed; `code` is the `card.results.
  CardResult` number (terminal-standard where the standard has one), `result` its name;
- `engine`: the engine refused; `code` is its `terminals.results.ResultCode`;
- `request`, `agent`, `service`: the agent's own outcomes, `AgentResult` below —
  the request was refused (authentication, Host, origin, body), the agent's own
  policy stopped the flow (busy reader, last PIN try), the engine could not be reached
  in time.

Messages never carry a PIN, ID number, name, card number or key (STYLE.md §10).
"""

from __future__ import annotations

import enum

from card.results import CardError, CardResult


class ErrorSource(enum.StrEnum):
    card = "card"  # the card or the reader (CardResult codes, terminal-standard numbers)
    engine = "engine"  # the engine refused (ResultCode numbers)
    service = "service"  # the engine could not be reached, answered 503 or too late
    request = "request"  # the request itself was refused (before any card or engine work)
    agent = "agent"  # the agent's own policy stopped the flow


class AgentResult(enum.IntEnum):
    """The agent's own outcomes; stable numbers, never renumbered."""

    token_missing = 1
    token_invalid = 2
    host_refused = 3
    origin_refused = 4
    cross_site_refused = 5
    preflight_refused = 6
    content_type_refused = 7
    body_malformed = 8
    body_too_large = 9
    field_invalid = 10
    pin_required = 11
    not_found = 12
    method_not_allowed = 13
    agent_busy = 21
    pin_last_try = 22
    engine_unavailable = 31
    engine_unreachable = 32
    engine_timeout = 33
    ext_cryptogram_missing = 41
    internal_error = 91


# (source, HTTP status) of each of the agent's own outcomes.
AGENT_RESULTS: dict[AgentResult, tuple[ErrorSource, int]] = {
    AgentResult.token_missing: (ErrorSource.request, 401),
    AgentResult.token_invalid: (ErrorSource.request, 401),
    AgentResult.host_refused: (ErrorSource.request, 421),
    AgentResult.origin_refused: (ErrorSource.request, 403),
    AgentResult.cross_site_refused: (ErrorSource.request, 403),
    AgentResult.preflight_refused: (ErrorSource.request, 403),
    AgentResult.content_type_refused: (ErrorSource.request, 415),
    AgentResult.body_malformed: (ErrorSource.request, 400),
    AgentResult.body_too_large: (ErrorSource.request, 413),
    AgentResult.field_invalid: (ErrorSource.request, 400),
    AgentResult.pin_required: (ErrorSource.request, 400),
    AgentResult.not_found: (ErrorSource.request, 404),
    AgentResult.method_not_allowed: (ErrorSource.request, 405),
    AgentResult.agent_busy: (ErrorSource.agent, 503),
    AgentResult.pin_last_try: (ErrorSource.agent, 422),
    AgentResult.engine_unavailable: (ErrorSource.service, 503),
    AgentResult.engine_unreachable: (ErrorSource.service, 503),
    AgentResult.engine_timeout: (ErrorSource.service, 503),
    AgentResult.ext_cryptogram_missing: (ErrorSource.engine, 422),
    AgentResult.internal_error: (ErrorSource.agent, 500),
}

# Card outcomes that mean "the reader is not usable now", not "this card is refused".
_READER_DOWN = frozenset({CardResult.reader_error.name, CardResult.reader_timeout.name})
# Answers a client may retry as they are, after Retry-After seconds.
RETRYABLE = frozenset(
    {
        AgentResult.agent_busy.name,
        AgentResult.engine_unavailable.name,
        AgentResult.engine_unreachable.name,
        AgentResult.engine_timeout.name,
        *_READER_DOWN,
    }
)


class AgentError(Exception):
    """A card flow or a request failed; see the module docstring. `tries_left` is the
    card's remaining PIN tries on the PIN outcomes (pin_verify_failed, pin_locked,
    pin_last_try), else None."""

    def __init__(
        self,
        source: ErrorSource,
        code: int,
        result: str,
        message: str,
        *,
        tries_left: int | None = None,
    ) -> None:
        super().__init__(message)
        self.source = source
        self.code = code
        self.result = result
        self.message = message
        self.tries_left = tries_left

    @classmethod
    def of(cls, result: AgentResult, message: str, *, tries_left: int | None = None) -> AgentError:
        source, _ = AGENT_RESULTS[result]
        return cls(source, int(result), result.name, message, tries_left=tries_left)

    @classmethod
    def from_card(cls, exc: CardError) -> AgentError:
        return cls(
            ErrorSource.card, int(exc.result), exc.result.name, str(exc), tries_left=exc.tries_left
        )

    @property
    def http_status(self) -> int:
        if self.source in (ErrorSource.request, ErrorSource.agent, ErrorSource.service):
            return AGENT_RESULTS[AgentResult[self.result]][1]
        if self.source is ErrorSource.card and self.result in _READER_DOWN:
            return 503
        return 422

    def __repr__(self) -> str:
        return f"AgentError({self.source.value}, {self.code}, {self.result})"
