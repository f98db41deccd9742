"""`simulators.vpicc` against a stand-in for vpcd's side of the socket (a listening
TCP socket in the test speaking the vpcd framing), to pin down the protocol exactly:
what is answered and what is not, reconnecting while vpcd is away, stopping, and a
misbehaving card. The real vpcd inside pcscd is exercised by test_pcsc_reader.py.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

import pytest

from simulators.card.card import VirtualCard
from simulators.vpicc import Vpicc, VpiccState

IO_TIMEOUT_S = 5.0


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    sock.settimeout(IO_TIMEOUT_S)
    yield sock
    sock.close()


def send_frame(conn: socket.socket, payload: bytes) -> None:
    conn.sendall(struct.pack(">H", len(payload)) + payload)


def recv_frame(conn: socket.socket) -> bytes:
    (size,) = struct.unpack(">H", conn.recv(2, socket.MSG_WAITALL))
    return conn.recv(size, socket.MSG_WAITALL)


def start(card: object, port: int) -> Vpicc:
    vpicc = Vpicc(card, port=port, netns="none", reconnect_interval_s=0.2)  # type: ignore[arg-type]
    vpicc.start()
    return vpicc


def test_answers_get_atr_and_apdus_and_nothing_to_power_controls(
    listener: socket.socket,
) -> None:
    card = VirtualCard([], generation=3)
    vpicc = start(card, listener.getsockname()[1])
    conn, _ = listener.accept()
    conn.settimeout(IO_TIMEOUT_S)
    try:
        send_frame(conn, b"\x04")
        assert recv_frame(conn) == card.atr
        send_frame(conn, b"\x01")  # power on: no answer expected ...
        send_frame(conn, b"\x07")  # ... nor to an unknown control byte
        send_frame(conn, bytes.fromhex("00A40000023F00"))
        assert recv_frame(conn) == b"\x90\x00"  # the next frame is this APDU's answer
        assert card.powered
        send_frame(conn, b"\x00")  # power off
        send_frame(conn, bytes.fromhex("00A4040007A0000000031010"))
        assert recv_frame(conn) == b"\x6a\x82"
        assert not card.powered and vpicc.apdus == 2
    finally:
        vpicc.stop()
        conn.close()


def test_stop_closes_the_socket_which_is_card_removal(listener: socket.socket) -> None:
    vpicc = start(VirtualCard([], generation=3), listener.getsockname()[1])
    conn, _ = listener.accept()
    conn.settimeout(IO_TIMEOUT_S)
    assert vpicc.wait_connected(IO_TIMEOUT_S)
    started = time.monotonic()
    vpicc.stop()
    assert conn.recv(2) == b""  # EOF: what vpcd reports to pcscd as "card removed"
    assert time.monotonic() - started < 1
    assert vpicc.state is VpiccState.stopped
    vpicc.stop()  # idempotent
    conn.close()


def test_reconnects_while_vpcd_is_away_and_after_it_hangs_up() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here yet
    vpicc = start(VirtualCard([], generation=3), port)
    try:
        assert not vpicc.wait_connected(0.5)
        assert vpicc.state is VpiccState.connecting
        with socket.socket() as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", port))
            server.listen(1)
            server.settimeout(IO_TIMEOUT_S)
            first, _ = server.accept()
            first.close()  # vpcd hangs up (pcscd stopped)
            second, _ = server.accept()
            second.settimeout(IO_TIMEOUT_S)
            send_frame(second, b"\x04")
            assert recv_frame(second) == vpicc.icc.atr
            second.close()
        assert vpicc.connections >= 2
    finally:
        vpicc.stop()


class RaisingCard:
    """Breaks the Icc contract (transmit raises) on INS 99."""

    def __init__(self) -> None:
        self.chip = VirtualCard([], generation=2)
        self.atr = self.chip.atr

    def power_on(self) -> bytes:
        return self.chip.power_on()

    def power_off(self) -> None:
        self.chip.power_off()

    def transmit(self, command: bytes) -> bytes:
        if command[1] == 0x99:
            raise RuntimeError("card bug")
        return self.chip.transmit(command)


def test_a_card_that_raises_answers_6f00_and_stays_in_the_reader(
    listener: socket.socket,
) -> None:
    vpicc = start(RaisingCard(), listener.getsockname()[1])
    conn, _ = listener.accept()
    conn.settimeout(IO_TIMEOUT_S)
    try:
        send_frame(conn, bytes.fromhex("00990000"))
        assert recv_frame(conn) == b"\x6f\x00"
        send_frame(conn, bytes.fromhex("00A40000023F00"))
        assert recv_frame(conn) == b"\x90\x00"
    finally:
        vpicc.stop()
        conn.close()
