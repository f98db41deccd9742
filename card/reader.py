"""The `Reader` protocol: one card slot, as the card flows see it.

Two implementations: `card.pcsc.PcscReader` (pyscard through pcscd: real readers and
the vsmartcard virtual reader) and `card.memory.MemoryReader` (an `Icc` object in
process, for unit tests). The protocol is synchronous because PC/SC is: async callers
(the card agent) run one reader's calls on one dedicated thread.

Invariants every implementation keeps:
- every call that talks to the card takes `deadline_s` and returns or raises within it;
- a failure is one of the `ReaderError` subclasses below, never a library exception;
- after `CardRemoved` or `ReaderTimeout` the connection is dropped and the next
  `connect()` starts afresh (a new power-on: the card's state is gone).
"""

from __future__ import annotations

from typing import Protocol

from card.apdu import CommandApdu, ResponseApdu


class ReaderError(Exception):
    """Base of every failure a Reader reports."""


class ReaderUnavailable(ReaderError):
    """The reader or the PC/SC service cannot be reached (pcscd down, reader unplugged)."""


class NoCard(ReaderError):
    """No card is in the reader."""


class CardRemoved(ReaderError):
    """The card was removed (or reset by someone else) during the session."""


class ReaderTimeout(ReaderError):
    """The card did not answer within the deadline."""


class Reader(Protocol):
    @property
    def name(self) -> str: ...

    def card_present(self) -> bool:
        """True when a card sits in the reader (no power-on needed)."""
        ...

    def wait_for_card(self, timeout_s: float) -> bool:
        """Block until a card is present or `timeout_s` passes; True if present."""
        ...

    def wait_for_removal(self, timeout_s: float) -> bool:
        """Block until the reader is empty or `timeout_s` passes; True if empty."""
        ...

    def connect(self, *, deadline_s: float) -> bytes:
        """Power the card on (cold reset) and return its ATR."""
        ...

    def transmit(self, command: CommandApdu, *, deadline_s: float) -> ResponseApdu:
        """Send one command APDU and return the card's response."""
        ...

    def disconnect(self) -> None:
        """Power the card off; harmless when not connected."""
        ...
