"""`card.pcsc.PcscReader` against a real pcscd with the vsmartcard virtual reader and
the virtual card served by `simulators.vpicc` (fixtures: tests/pcsc_support.py).

Pins down: reader listing; presence through SCardGetStatusChange; the ATR and APDUs
as the card sends them; the SSSE session over PC/SC; removal mid-session →
CardRemoved; a card that stops answering → ReaderTimeout on time and a cold reset
afterwards; a pcscd restart → the same reader object works again; and that vpcd's
0.0.0.0 listener is out of reach of the host when pcscd runs isolated. Nothing is
mocked: the slow card is a real virtual card whose answer a test holds back.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
from smartcard.System import readers as pyscard_readers

from card.apdu import CommandApdu, StatusWord
from card.pcsc import PcscReader, list_readers
from card.reader import CardRemoved, NoCard, ReaderTimeout, ReaderUnavailable
from card.ssse import SSSE_AID, CardAlgorithm, CardError, CardResult, CardSession, SessionState
from hsm.cardauth import internal_auth_cryptogram
from simulators.card.card import VirtualCard
from simulators.card.keys import card_keys
from simulators.pcscd import PcscdManager
from simulators.population import Population
from tests.pcsc_support import InsertCard, blank_card, person_card

SELECT_MF = CommandApdu(0x00, 0xA4, 0x00, 0x00, b"\x3f\x00")
ECHO_INS = 0xEE  # what the held-back card below stalls on


def test_list_readers_names_both_vpcd_slots(pcscd: PcscdManager) -> None:
    assert set(pcscd.readers) <= set(list_readers())
    assert pcscd.readers == ("Yikatong vpcd 00 00", "Yikatong vpcd 00 01")


def _listening_ports(net_tcp: Path) -> set[int]:
    ports = set()
    for line in net_tcp.read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A":  # TCP_LISTEN
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_isolated_pcscd_keeps_the_vpcd_port_off_the_host_network(pcscd: PcscdManager) -> None:
    """vpcd binds 0.0.0.0; in its own namespace that is only the namespace's loopback."""
    if not pcscd.isolated:
        pytest.skip("pcscd could not get a network namespace (not root): see docs/PCSC.md")
    assert pcscd.port in _listening_ports(Path(f"/proc/{pcscd.pid}/net/tcp"))
    assert pcscd.port not in _listening_ports(Path("/proc/self/net/tcp"))
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.settimeout(2)
        probe.connect(("127.0.0.1", pcscd.port))


def test_unknown_reader_is_reader_unavailable(pcscd: PcscdManager) -> None:
    with PcscReader("No Such Reader 00 00") as reader, pytest.raises(ReaderUnavailable):
        reader.card_present()


def test_insertion_and_removal_are_seen_through_status_changes(
    pcscd: PcscdManager, insert_card: InsertCard
) -> None:
    with PcscReader(pcscd.readers[0]) as reader:
        assert not reader.card_present()
        assert not reader.wait_for_card(0.2)
        with pytest.raises(NoCard):
            reader.connect(deadline_s=2)
        vpicc = insert_card(blank_card())
        assert reader.card_present()
        assert reader.wait_for_card(0)
        started = time.monotonic()
        vpicc.stop()
        assert reader.wait_for_removal(5)
        assert time.monotonic() - started < 2  # one or two presence polls, not a timeout
        assert not reader.card_present()


def test_atr_through_pyscard_is_the_virtual_cards(
    pcscd: PcscdManager, insert_card: InsertCard, population: Population, key_env: dict[str, str]
) -> None:
    gen2, _ = person_card(population, key_env, 0)  # index 0: generation 2
    gen3 = blank_card()
    insert_card(gen2, slot=0)
    insert_card(gen3, slot=1)
    for slot, card in ((0, gen2), (1, gen3)):
        with PcscReader(pcscd.readers[slot]) as reader:
            assert reader.connect(deadline_s=2) == card.atr
            assert reader.protocol == "T=1"  # the ATR offers both; pcscd picks T=1
        # An independent client: pyscard's own high-level API.
        connection = next(r for r in pyscard_readers() if str(r) == pcscd.readers[slot])
        link = connection.createConnection()
        link.connect()
        try:
            assert bytes(link.getATR()) == card.atr
        finally:
            link.disconnect()
    assert gen2.atr != gen3.atr  # "YKT-SSC-G2" / "YKT-SSC-G3"


def test_select_ssse_through_pcsc_reader_answers_its_fci(
    pcscd: PcscdManager, insert_card: InsertCard, population: Population, key_env: dict[str, str]
) -> None:
    card, _ = person_card(population, key_env, 1)
    insert_card(card)
    with PcscReader(pcscd.readers[0]) as reader:
        reader.connect(deadline_s=2)
        fci = reader.transmit(CommandApdu(0x00, 0xA4, 0x04, 0x00, SSSE_AID, le=256), deadline_s=2)
        assert fci.sw == StatusWord.ok
        assert fci.data[0] == 0x6F and SSSE_AID in fci.data
        other = reader.transmit(CommandApdu(0x00, 0xA4, 0x04, 0x00, b"\xa0" * 7), deadline_s=2)
        assert other.sw == StatusWord.file_not_found


def test_ssse_session_over_pcsc_reads_ef05_and_authenticates(
    pcscd: PcscdManager, insert_card: InsertCard, population: Population, key_env: dict[str, str]
) -> None:
    index = 2  # generation 3 (SM4)
    card, masters = person_card(population, key_env, index)
    insert_card(card)
    expected = population.card(index)
    with PcscReader(pcscd.readers[0]) as reader, CardSession(reader) as session:
        basics = session.open()
        assert (basics.card_sn, basics.card_no) == (expected.card_sn, expected.card_no)
        assert basics.algorithm is CardAlgorithm.SM4 and basics.atr == card.atr
        factor, challenge = os.urandom(8), os.urandom(8)
        cryptogram = session.internal_authenticate(factor, challenge)
        key = card_keys(masters, expected).internal_auth
        assert cryptogram == internal_auth_cryptogram(key, factor, challenge)
        assert len(session.get_challenge()) == 8


def test_card_removed_mid_session_is_card_removed(
    pcscd: PcscdManager, insert_card: InsertCard, population: Population, key_env: dict[str, str]
) -> None:
    card, _ = person_card(population, key_env, 2)
    vpicc = insert_card(card)
    with PcscReader(pcscd.readers[0]) as reader:
        session = CardSession(reader)
        session.open()
        vpicc.stop()  # pulled out, without waiting for pcscd to notice
        with pytest.raises(CardError) as removed:
            session.get_challenge()
        assert removed.value.result is CardResult.card_removed
        assert isinstance(removed.value.__cause__, CardRemoved)
        assert session.state is SessionState.lost
        session.close()
        with pytest.raises(NoCard):
            reader.connect(deadline_s=2)


class HeldBackCard:
    """A real virtual card whose answer to INS EE waits for `release` (a card that
    stops answering); counts power-ons to see the cold reset."""

    def __init__(self) -> None:
        self.chip = blank_card()
        self.release = threading.Event()
        self.power_ons = 0

    @property
    def atr(self) -> bytes:
        return self.chip.atr

    def power_on(self) -> bytes:
        self.power_ons += 1
        return self.chip.power_on()

    def power_off(self) -> None:
        self.chip.power_off()

    def transmit(self, command: bytes) -> bytes:
        if command[1:2] == bytes((ECHO_INS,)):
            self.release.wait(10)
        return self.chip.transmit(command)


def test_card_that_stops_answering_times_out_on_time_and_the_reader_recovers(
    pcscd: PcscdManager, insert_card: InsertCard
) -> None:
    card = HeldBackCard()
    insert_card(card)
    with PcscReader(pcscd.readers[0]) as reader:
        reader.connect(deadline_s=2)
        powered = card.power_ons
        started = time.monotonic()
        with pytest.raises(ReaderTimeout):
            reader.transmit(CommandApdu(0x80, ECHO_INS, 0x00, 0x00), deadline_s=0.3)
        elapsed = time.monotonic() - started
        assert 0.3 <= elapsed < 0.6
        with pytest.raises(NoCard, match="not connected"):  # the session was dropped
            reader.transmit(SELECT_MF, deadline_s=1)
        card.release.set()  # the stuck call returns on the abandoned worker
        assert reader.connect(deadline_s=3) == card.atr
        assert card.power_ons > powered  # cold reset: the old session state is gone
        assert reader.transmit(SELECT_MF, deadline_s=1).sw == StatusWord.ok


def test_pcscd_restart_the_same_reader_reconnects(
    pcscd: PcscdManager, insert_card: InsertCard
) -> None:
    card = blank_card()
    vpicc = insert_card(card)
    with PcscReader(pcscd.readers[0]) as reader:
        reader.connect(deadline_s=2)
        assert reader.transmit(SELECT_MF, deadline_s=1).sw == StatusWord.ok
        pcscd.stop()
        try:
            with pytest.raises(ReaderUnavailable):
                reader.transmit(SELECT_MF, deadline_s=1)
            with pytest.raises(ReaderUnavailable):
                reader.card_present()
            with pytest.raises(ReaderUnavailable):
                list_readers()
        finally:
            pcscd.start()
        # The vpicc reconnects within a second; the reader's dead context is replaced.
        assert reader.wait_for_card(5)
        assert vpicc.connections == 2
        assert reader.connect(deadline_s=2) == card.atr
        assert reader.transmit(SELECT_MF, deadline_s=1).sw == StatusWord.ok


def test_transmit_without_connect_and_with_no_time_left(
    pcscd: PcscdManager, insert_card: InsertCard
) -> None:
    insert_card(VirtualCard([], generation=2))
    with PcscReader(pcscd.readers[0]) as reader:
        with pytest.raises(NoCard, match="not connected"):
            reader.transmit(SELECT_MF, deadline_s=1)
        with pytest.raises(ReaderTimeout):
            reader.connect(deadline_s=0)
        reader.connect(deadline_s=2)
        with pytest.raises(ReaderTimeout):
            reader.transmit(SELECT_MF, deadline_s=0)
        reader.connect(deadline_s=2)
        assert reader.transmit(SELECT_MF, deadline_s=1).sw == StatusWord.ok
        reader.disconnect()
        reader.disconnect()  # harmless when not connected
