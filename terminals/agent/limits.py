"""Every limit of the card agent in one place (STYLE.md §6), with their relations
asserted at import: deadlines, queue sizes, body sizes, token and PIN lengths, the
engine probe's cache. The CLI and the HTTP layer read them from here; a number in
another agent module is a bug.
"""

from __future__ import annotations

from typing import Final

from card.ssse import PIN_DIGITS_MAX as _CARD_PIN_DIGITS_MAX
from card.ssse import PIN_DIGITS_MIN as _CARD_PIN_DIGITS_MIN

# The card: one budget per card operation (all its APDUs), as card.ssse applies it.
CARD_DEADLINE_S: Final = 2.0

# The engine: the budget of every engine call of one card flow together (sign-in,
# 9301, 1101), so that a hung engine answers 503 within it. A kiosk may ask for a
# shorter or longer one per request (`deadline_s`), within MIN..MAX.
ENGINE_TIMEOUT_S: Final = 5.0
ENGINE_DEADLINE_MIN_S: Final = 0.2
ENGINE_DEADLINE_MAX_S: Final = 30.0

# The reader lock: a flow waits up to QUEUE_WAIT_S for the running one, and at most
# QUEUE_MAX flows wait at once; beyond either, "busy" with Retry-After.
QUEUE_WAIT_S: Final = 3.0
QUEUE_MAX: Final = 4
RETRY_AFTER_S: Final = 2

# /v1/status: the engine's /readyz, probed with a short timeout and cached.
PROBE_TIMEOUT_S: Final = 1.0
PROBE_CACHE_S: Final = 5.0

# HTTP.
BODY_MAX_BYTES: Final = 4096
EVENTS_WAIT_MAX_S: Final = 30.0
EVENT_LOG_MAX: Final = 256  # card events kept for long-polling clients
REQUEST_ID_CHARS_MAX: Final = 64
PREFLIGHT_MAX_AGE_S: Final = 600

# The bearer token: TOKEN_BYTES random bytes, base64url (43 characters); a token file
# written by an operator may hold any base64url text of TOKEN_CHARS_MIN..MAX.
TOKEN_BYTES: Final = 32
TOKEN_CHARS_MIN: Final = 32
TOKEN_CHARS_MAX: Final = 256

# PINs are checked here before any card or engine work, with the card's own bounds.
PIN_DIGITS_MIN: Final = _CARD_PIN_DIGITS_MIN
PIN_DIGITS_MAX: Final = _CARD_PIN_DIGITS_MAX
# The PIN guard: VERIFY is not sent while the card has this many tries or fewer left
# (1: the last try is kept for the counter; see docs/CARD_AGENT.md).
PIN_TRIES_KEPT: Final = 1


def _check(cond: bool, what: str) -> None:
    if not cond:  # stays on under -O (STYLE.md §5)
        raise AssertionError(f"terminals.agent.limits: {what}")


_check(ENGINE_DEADLINE_MIN_S <= ENGINE_TIMEOUT_S <= ENGINE_DEADLINE_MAX_S, "engine timeout")
_check(0 < PROBE_TIMEOUT_S < PROBE_CACHE_S, "a probe ends before its answer goes stale")
_check(PROBE_TIMEOUT_S < ENGINE_TIMEOUT_S, "the probe is cheaper than a flow")
_check(QUEUE_WAIT_S < EVENTS_WAIT_MAX_S and QUEUE_MAX >= 1, "queue bounds")
_check(TOKEN_CHARS_MIN <= (TOKEN_BYTES * 4 + 2) // 3 <= TOKEN_CHARS_MAX, "token length")
_check(PIN_TRIES_KEPT >= 0, "tries kept")
