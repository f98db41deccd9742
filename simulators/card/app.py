"""What one application on the virtual chip provides to the dispatcher, and the modes
a virtual card can be made in for tests."""

from __future__ import annotations

import enum
from typing import Protocol

from card.apdu import CommandApdu, ResponseApdu


class CardMode(enum.StrEnum):
    genuine = "genuine"
    clone = "clone"  # right data, wrong keys: cryptograms do not verify
    expired = "expired"  # the chip's expiry date (EF05 record 06) lies in the past
    pin_blocked = "pin-blocked"  # PIN try counter already at 0


class CardApplication(Protocol):
    @property
    def aids(self) -> tuple[bytes, ...]:
        """The DF names this application answers SELECT (00 A4 04 00) for."""
        ...

    def select(self, aid: bytes) -> ResponseApdu:
        """Become the current application; answer the FCI."""
        ...

    def process(self, command: CommandApdu) -> ResponseApdu:
        """Any command other than SELECT by DF name, while this application is current."""
        ...

    def reset(self) -> None:
        """Power-on: forget session state (selected file, challenge, verified PIN);
        persistent state (try counter, ATC) stays."""
        ...
