"""One APDU round trip through the real PC/SC stack (run by `make bench`, not by
`make test`): PcscReader → pcscd → vpcd → TCP → `simulators.vpicc` → the virtual
card, and back. Every figure is the time of one sequential APDU (one round of the
benchmark is one APDU), so pytest-benchmark's median is the APDU median and its ops/s
the sequential APDU rate.

- `pcsc_reader`: GET CHALLENGE through `PcscReader.transmit`, which hands each call to
  the reader's worker thread so that a deadline can be kept (card/pcsc.py);
- `raw_scard`: the same APDU with `smartcard.scard.SCardTransmit` on the calling
  thread: the price of the worker hand-off is the difference;
- `no_quickack`: the vpicc without re-arming TCP_QUICKACK, to show the ~44 ms
  delayed-ACK stall it removes (TOOLCHAIN.md §1.6); few rounds, since each is slow.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from smartcard import scard

from card.apdu import CommandApdu, StatusWord
from card.pcsc import PcscReader
from card.ssse import SSSE_AID
from simulators.pcscd import PcscdManager
from simulators.population import Population
from tests.pcsc_support import InsertCard, person_card

GET_CHALLENGE = CommandApdu(0x00, 0x84, 0x00, 0x00, le=8)
SELECT_SSSE = CommandApdu(0x00, 0xA4, 0x04, 0x00, SSSE_AID, le=256)


@pytest.fixture(params=[True, False], ids=["quickack", "no_quickack"])
def reader(
    request: pytest.FixtureRequest,
    pcscd: PcscdManager,
    insert_card: InsertCard,
    population: Population,
    key_env: dict[str, str],
) -> Iterator[tuple[PcscReader, bool]]:
    """A connected reader with SSSE selected on person 1's card, and whether its
    vpicc re-arms TCP_QUICKACK."""
    card, _ = person_card(population, key_env, 1)
    insert_card(card, quickack=request.param)
    with PcscReader(pcscd.readers[0]) as reader:
        reader.connect(deadline_s=2)
        assert reader.transmit(SELECT_SSSE, deadline_s=2).sw == StatusWord.ok
        yield reader, request.param


def test_pcsc_reader_get_challenge(benchmark: Any, reader: tuple[PcscReader, bool]) -> None:
    connected, quickack = reader
    rounds = 2000 if quickack else 25  # 25 × ~44 ms without QUICKACK
    result = benchmark.pedantic(
        lambda: connected.transmit(GET_CHALLENGE, deadline_s=1), rounds=rounds, iterations=1
    )
    assert result.sw == StatusWord.ok and len(result.data) == 8


def test_raw_scard_get_challenge(
    benchmark: Any,
    pcscd: PcscdManager,
    insert_card: InsertCard,
    population: Population,
    key_env: dict[str, str],
) -> None:
    card, _ = person_card(population, key_env, 1)
    insert_card(card)
    rv, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    assert rv == scard.SCARD_S_SUCCESS
    rv, handle, protocol = scard.SCardConnect(
        ctx, pcscd.readers[0], scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T1
    )
    assert rv == scard.SCARD_S_SUCCESS
    try:
        rv, answer = scard.SCardTransmit(handle, protocol, list(SELECT_SSSE.encode()))
        assert rv == scard.SCARD_S_SUCCESS and answer[-2:] == [0x90, 0x00]
        apdu = list(GET_CHALLENGE.encode())
        rv, answer = benchmark.pedantic(
            lambda: scard.SCardTransmit(handle, protocol, apdu), rounds=2000, iterations=1
        )
        assert rv == scard.SCARD_S_SUCCESS and answer[-2:] == [0x90, 0x00]
    finally:
        scard.SCardDisconnect(handle, scard.SCARD_UNPOWER_CARD)
        scard.SCardReleaseContext(ctx)
