"""`Icc`: a card as an object (integrated circuit card, ISO 7816-3 terms).

The virtual cards in `simulators.card` implement it; `card.memory.MemoryReader` puts
one in a reader in process, and `simulators.vpicc` serves one to the vsmartcard vpcd
driver inside a real pcscd. Byte level on purpose: a real card receives bytes, and the
card must answer any byte string (a malformed command gets a status word, never an
exception).
"""

from __future__ import annotations

from typing import Protocol


class Icc(Protocol):
    @property
    def atr(self) -> bytes:
        """The answer to reset; constant for a card."""
        ...

    def power_on(self) -> bytes:
        """Cold reset: forget the session (selection, challenges, PIN state) and
        return the ATR. Persistent state (PIN try counter, ATC) survives."""
        ...

    def power_off(self) -> None: ...

    def transmit(self, command: bytes) -> bytes:
        """One command APDU in, response APDU (data || SW1 SW2) out; never raises."""
        ...
