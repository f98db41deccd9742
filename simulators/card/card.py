"""`VirtualCard`: the chip. Decodes command bytes, routes SELECT by DF name to the
application that owns the AID, everything else to the current application, and turns
any malformed command into a status word (an `Icc` never raises).

The ATR offers T=0 and T=1 (pcscd negotiates T=1) and carries ten historical bytes
"YKT-SSC-G" + generation digit, which is what `iReadCardBas` reports as 卡复位信息.
"""

from __future__ import annotations

from card.apdu import ApduError, CommandApdu, ResponseApdu, StatusWord
from simulators.card.app import CardApplication

INS_SELECT = 0xA4
SELECT_BY_NAME = 0x04
MF = b"\x3f\x00"


def make_atr(historical: bytes) -> bytes:
    """TS 3B, T0 8K (TD1 follows, K historical bytes), TD1 80 (TD2 follows, T=0),
    TD2 01 (T=1), historical bytes, TCK (XOR of T0..last, required once T=1 is offered)."""
    if not 1 <= len(historical) <= 15:
        raise ValueError("an ATR carries 1..15 historical bytes")
    body = bytes((0x80 | len(historical), 0x80, 0x01)) + historical
    tck = 0
    for b in body:
        tck ^= b
    return b"\x3b" + body + bytes((tck,))


def _sw(sw: StatusWord) -> bytes:
    return ResponseApdu(b"", sw).encode()


class VirtualCard:
    def __init__(self, applications: list[CardApplication], *, generation: int) -> None:
        self._apps = list(applications)
        self._atr = make_atr(f"YKT-SSC-G{generation}".encode("ascii"))
        self._current: CardApplication | None = None
        self.powered = False

    @property
    def atr(self) -> bytes:
        return self._atr

    def power_on(self) -> bytes:
        self._current = None
        for app in self._apps:
            app.reset()
        self.powered = True
        return self._atr

    def power_off(self) -> None:
        self._current = None
        self.powered = False

    def transmit(self, command: bytes) -> bytes:
        try:
            apdu = CommandApdu.decode(command)
        except ApduError:
            return _sw(StatusWord.wrong_length)
        if apdu.cla not in (0x00, 0x80, 0x84):
            return _sw(StatusWord.class_not_supported)
        if apdu.ins == INS_SELECT and apdu.p1 == SELECT_BY_NAME:
            return self._select(apdu.data).encode()
        if apdu.ins == INS_SELECT and apdu.p1 == 0x00 and apdu.data in (b"", MF):
            self._current = None
            return _sw(StatusWord.ok)
        if self._current is None:
            return _sw(StatusWord.conditions_of_use_not_satisfied)
        return self._current.process(apdu).encode()

    def _select(self, name: bytes) -> ResponseApdu:
        for app in self._apps:
            if name in app.aids:
                self._current = app
                return app.select(name)
        # Unknown AIDs must be refused: a card that answers 9000 to every SELECT is
        # misidentified by OpenSC's probing (TOOLCHAIN.md §1.5).
        return ResponseApdu(b"", StatusWord.file_not_found)
