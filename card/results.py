"""Outcomes of the card flows as stable numbers, and the one exception that carries them.

`CardResult` mirrors the terminal-interface standard's return codes (LD/T 6001.5,
DOMAIN.md §3.4) where the standard has one, so that an integrator who knows the
standard reader DLLs reads our codes without a table. Where it has none we picked
numbers and keep them stable (never renumber a member; add new ones):

- ISO 7816-4 status words without a terminal-standard code are mapped to the negated
  status word in decimal: 6A82 → −27266, 6A83 → −27267, 6982 → −27010, 6985 → −27013,
  9303 → −37635. The standard lists these status words among its mappings without
  giving numbers in the sources read; negating the status word is self-explaining.
- Our own codes live in the −9000 block, far from the standard's small numbers and
  its −2201..−2203 / −25536..−25538 ranges: card removed, reader timeout, card
  expired, card data malformed, unsupported algorithm, unexpected status word.

`reader_failure` and `status_error` are the two mappings into it (reader exceptions,
card status words), shared by the card flows.

`CardError` is the single exception of `card.ssse`: a business-level refusal by the
card or an operating failure of the reader, always with a `CardResult`. Failures of
the reader are chained (`raise CardError(...) from ReaderError`). Messages never carry
card numbers, ID numbers, names, PINs or cryptograms (STYLE.md §10).
"""

from __future__ import annotations

import enum

from card.apdu import StatusWord, status_name
from card.reader import CardRemoved, NoCard, ReaderError, ReaderTimeout


class CardResult(enum.IntEnum):
    # Terminal-standard codes (LD/T 6001.5, DOMAIN.md §3.4).
    wrong_card_type = -1  # not a social security card: no SSSE application
    no_card = -2
    reader_error = -11  # reader or PC/SC service not usable
    card_id_format_error = -20  # EF05/01 card identification code malformed
    internal_auth_failed = -21  # the card refused or botched INTERNAL AUTHENTICATE
    illegal_input = -23  # an argument the terminal was given is not usable
    pin_length_error = -33  # a PIN must be 4..16 digits
    pin_verify_failed = -51  # wrong PIN; CardError.tries_left says how many remain
    pin_locked = -52
    external_auth_failed_2_left = -25536  # also used when the card reports more than 2
    external_auth_failed_1_left = -25537
    external_auth_failed_0_left = -25538  # the external-authentication key is blocked
    # ISO 7816-4 status words the standard maps, numbered as the negated status word.
    file_not_found = -0x6A82
    record_not_found = -0x6A83
    security_status_not_satisfied = -0x6982  # e.g. EF06 of a generation-3 card before RKSSSE
    conditions_of_use_not_satisfied = -0x6985  # e.g. EXTERNAL AUTHENTICATE without a challenge
    application_locked = -0x9303
    # Our own codes (no equivalent in the standard).
    card_removed = -9001  # the card left the reader during the session
    reader_timeout = -9002  # the card did not answer within the deadline
    card_expired = -9003  # EF05/06 lies before the day of the check
    card_data_malformed = -9004  # a record, the FCI or the ATR does not decode strictly
    unsupported_algorithm = -9005  # FCI algorithm identifier neither 3DES nor SM4
    unexpected_status = -9006  # a status word the flow has no meaning for; see .sw


class CardError(Exception):
    """A card flow failed; `result` says how, `sw` is the card's status word when the
    card answered, `tries_left` the remaining tries of a PIN or key when known."""

    def __init__(
        self,
        result: CardResult,
        message: str,
        *,
        sw: int | None = None,
        tries_left: int | None = None,
    ) -> None:
        super().__init__(message)
        self.result = result
        self.sw = sw
        self.tries_left = tries_left

    def __repr__(self) -> str:
        sw = "" if self.sw is None else f", sw={self.sw:04X}"
        tries = "" if self.tries_left is None else f", tries_left={self.tries_left}"
        return f"CardError({self.result.name}{sw}{tries}: {self.args[0]})"


class SessionStateError(RuntimeError):
    """An operation was called in a state where it cannot run (a caller's bug, not a
    card outcome): e.g. reading the holder before `open()`, or after the card was lost."""


_STATUS_RESULTS: dict[int, CardResult] = {
    StatusWord.file_not_found: CardResult.file_not_found,
    StatusWord.record_not_found: CardResult.record_not_found,
    StatusWord.security_status_not_satisfied: CardResult.security_status_not_satisfied,
    StatusWord.conditions_of_use_not_satisfied: CardResult.conditions_of_use_not_satisfied,
    StatusWord.application_permanently_locked: CardResult.application_locked,
}


def reader_failure(exc: ReaderError) -> CardError:
    """The CardResult of a reader failure: NoCard −2, CardRemoved and ReaderTimeout our
    own codes, anything else (reader or pcscd unusable) −11."""
    if isinstance(exc, NoCard):
        return CardError(CardResult.no_card, f"no card: {exc}")
    if isinstance(exc, CardRemoved):
        return CardError(CardResult.card_removed, f"card removed: {exc}")
    if isinstance(exc, ReaderTimeout):
        return CardError(CardResult.reader_timeout, f"card timeout: {exc}")
    return CardError(CardResult.reader_error, f"reader error: {exc}")


def status_error(sw: int, what: str) -> CardError:
    """A card refusal as a CardError: the ISO status words the standard maps by name,
    anything else `unexpected_status` with the status word."""
    result = _STATUS_RESULTS.get(sw, CardResult.unexpected_status)
    return CardError(result, f"{what}: the card answered {status_name(sw)}", sw=sw)
