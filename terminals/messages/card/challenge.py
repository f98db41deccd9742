"""9301 card challenge (a yikatong extension; 93xx is unused by the national set): the
engine's 8-byte challenge for the card's INTERNAL AUTHENTICATE, single use, valid 60 s
and bound to the asking terminal and this card_sn; its answer goes into 1101 by card
(`yk_card_auth`). Generation-3 cards also need EXTERNAL AUTHENTICATE before EF06 can
be read (DOMAIN.md §3.3): send the card's two GET CHALLENGE values as
`ext_process_factor` and `ext_challenge` and the engine's HSM answers
`ext_cryptogram` under the card's external-authentication key (chosen by the card's
generation in the issuer's record). Unknown card: `card_unknown`.
"""

from __future__ import annotations

from terminals import fields as f
from terminals.messages.base import In, Out

INFNO = "9301"
NAME = "card challenge"


class Data(In, frozen=True, kw_only=True):
    """Both ext fields or neither."""

    card_sn: f.CardSn
    ext_process_factor: f.OptHex8Bytes = ""
    ext_challenge: f.OptHex8Bytes = ""


class Input(In, frozen=True, kw_only=True):
    data: Data


class Output(Out, frozen=True, kw_only=True):
    challenge: str  # 16 hex digits
    expires_in_s: int
    ext_cryptogram: str  # 16 hex digits, or "" when no ext values were sent

    def __repr__(self) -> str:
        return f"Output(expires_in_s={self.expires_in_s}, <challenge and cryptogram hidden>)"
