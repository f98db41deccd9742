"""`MemoryReader`: a `Reader` holding an `Icc` object in process, for unit tests and
simulations that need no PC/SC. Behaves like a PC/SC reader where that matters to the
card flows: no card → `NoCard`; a card removed after `connect()` → `CardRemoved` on the
next call, and a new `connect()` is a new power-on."""

from __future__ import annotations

import threading

from card.apdu import ApduError, CommandApdu, ResponseApdu
from card.icc import Icc
from card.reader import CardRemoved, NoCard, ReaderError


class MemoryReader:
    def __init__(self, icc: Icc | None = None, name: str = "memory 0") -> None:
        self._name = name
        self._icc = icc
        self._connected: Icc | None = None
        self._changed = threading.Condition()

    @property
    def name(self) -> str:
        return self._name

    def insert(self, icc: Icc) -> None:
        with self._changed:
            self._icc = icc
            self._changed.notify_all()

    def remove(self) -> None:
        with self._changed:
            if self._icc is not None:
                self._icc.power_off()
            self._icc = None
            self._changed.notify_all()

    def card_present(self) -> bool:
        return self._icc is not None

    def wait_for_card(self, timeout_s: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._icc is not None, timeout_s)

    def wait_for_removal(self, timeout_s: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._icc is None, timeout_s)

    def connect(self, *, deadline_s: float) -> bytes:
        icc = self._icc
        if icc is None:
            raise NoCard(f"{self._name}: no card in the reader")
        self._connected = icc
        return icc.power_on()

    def transmit(self, command: CommandApdu, *, deadline_s: float) -> ResponseApdu:
        icc = self._connected
        if icc is None:
            raise NoCard(f"{self._name}: not connected to a card")
        if self._icc is not icc:
            self._connected = None
            raise CardRemoved(f"{self._name}: the card was removed")
        try:
            return ResponseApdu.decode(icc.transmit(command.encode()))
        except ApduError as exc:
            raise ReaderError(f"{self._name}: the card answered a malformed response") from exc

    def disconnect(self) -> None:
        if self._connected is not None and self._icc is self._connected:
            self._connected.power_off()
        self._connected = None
