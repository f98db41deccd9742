"""`Vpicc`: serve one `Icc` to the vsmartcard vpcd driver inside a real pcscd.

vpcd (the reader driver loaded by pcscd) listens on a TCP port per slot; a virtual
card connects to it and answers what it is sent (TOOLCHAIN.md §1.4). Both directions
carry frames of a 2-byte big-endian length and a payload. vpcd sends a 1-byte control
(00 power off, 01 power on, 02 reset, 04 GET_ATR) or a command APDU; only GET_ATR and
APDUs are answered. pcscd asks for the ATR about every 400 ms as its presence poll, so
the card must answer GET_ATR at any time. Closing the socket is "card removed".

Invariants:
- `TCP_QUICKACK` is re-armed before every `recv` (it is not sticky). Debian 12's vpcd
  writes length and payload with two `send()` calls and no TCP_NODELAY, so without an
  immediate ACK of the length the payload waits for Linux's delayed ACK: every APDU
  then takes about 44 ms instead of about 0.2 ms (`quickack=False` reproduces it; the
  benchmark measures both);
- answers go out in one `sendall` (length and payload together) with TCP_NODELAY and a
  send deadline (SO_SNDTIMEO), so our side never adds a stall;
- while vpcd cannot be reached the client retries every `reconnect_interval_s`;
  `stop()` ends the loop promptly from any thread (shutdown wakes a blocked `recv`)
  and closes the socket, which pcscd sees as the card's removal;
- `Icc.transmit` never raises by contract; should it, the card answers 6F00 and keeps
  serving rather than vanishing from the reader.

Waiting for the next frame has no deadline on purpose: vpicc is the server side of
this conversation, and vpcd may stay silent as long as it likes. A frame's payload,
once its length has arrived, is read with MSG_WAITALL and a short read means vpcd went
away.

Network namespaces: `simulators.pcscd` can run pcscd in a namespace of its own so that
vpcd's 0.0.0.0 listener is reachable from that namespace's loopback only (docs/PCSC.md).
`netns="auto"` (the default) creates the socket inside the namespace of whichever
pcscd runs now (read from /run/pcscd/pcscd.pid at every connection attempt, so a
restarted pcscd is followed); a path joins that namespace; "none" stays in ours.

Run as a program (what `yikatong sim card insert` starts in the background):
    python -m simulators.vpicc --index 5 [--mode clone] [--slot 1] [--seed S --persons P]
    python -m simulators.vpicc --index 5 --card-keys -   # this card's keys on stdin
    python -m simulators.vpicc --blank          # a chip with no application

Keys: a card holds its own diversified keys, nothing more. `sim card insert` derives
them and writes them to the child's standard input (`--card-keys -`, one JSON line,
`encode_card_keys`), and starts it with an environment without secrets: the vpicc
process never sees the HSM master key or the issuer masters. Without `--card-keys`
(by hand, in a shell) it derives them from the demo key file as the environment names
it (IssuerMasters.from_env); a clone invents its own.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import enum
import logging
import os
import signal
import socket
import struct
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import msgspec

from card.apdu import StatusWord
from card.icc import Icc

if TYPE_CHECKING:
    from hsm.keys import SecretKey
    from simulators.card.keys import CardKeys

log = logging.getLogger(__name__)

VPCD_PORT = 0x8C7B  # 35963: slot 0; slot n listens on VPCD_PORT + n
VPCD_SLOTS = 2  # vpcd 3.3 opens two readers per configured port
CTRL_POWER_OFF = 0x00
CTRL_POWER_ON = 0x01
CTRL_RESET = 0x02
CTRL_GET_ATR = 0x04
FRAME_MAX = 0xFFFF  # the 2-byte length field
RECONNECT_INTERVAL_S = 1.0
CONNECT_TIMEOUT_S = 2.0
SEND_TIMEOUT_S = 2.0
PCSCD_PID_FILE = Path("/run/pcscd/pcscd.pid")
CLONE_NEWNET = 0x40000000  # <sched.h>
_ERROR_ANSWER = StatusWord.no_precise_diagnosis.to_bytes(2, "big")


class VpiccState(enum.Enum):
    idle = "idle"  # created, not started
    connecting = "connecting"  # vpcd not reached yet (or lost): retrying
    connected = "connected"  # serving vpcd: the card is in the reader
    stopped = "stopped"  # stop() was called; the socket is closed


class NetnsError(OSError):
    """The socket could not be created in the wanted network namespace."""


def pcscd_netns(pid_file: Path = PCSCD_PID_FILE) -> Path | None:
    """The network namespace of the running pcscd, or None when it shares ours (or
    no pcscd runs): the namespace a virtual card must connect from."""
    try:
        pid = int(pid_file.read_text().split()[0])
        theirs = os.stat(f"/proc/{pid}/ns/net")
        ours = os.stat("/proc/self/ns/net")
    except (OSError, ValueError, IndexError):
        return None
    if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
        return None
    return Path(f"/proc/{pid}/ns/net")


def socket_in_netns(netns: Path | None) -> socket.socket:
    """A TCP socket that belongs to `netns` (None: ours). A socket keeps the namespace
    it was created in, so only the creation runs inside it: setns(2) moves just the
    calling thread, which is moved back at once."""
    if netns is None:
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(netns, os.O_RDONLY)
    except OSError as exc:
        os.close(own)
        raise NetnsError(exc.errno, f"cannot open network namespace {netns}: {exc}") from exc
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NetnsError(err, f"cannot join {netns}: {os.strerror(err)} (needs root)")
        try:
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            if libc.setns(own, CLONE_NEWNET) != 0:  # never leave this thread elsewhere
                err = ctypes.get_errno()
                raise SystemExit(f"vpicc: cannot return to own network namespace: {err}")
    finally:
        os.close(target)
        os.close(own)


class Vpicc:
    """One virtual card in one vpcd slot; see the module docstring."""

    def __init__(
        self,
        icc: Icc,
        *,
        host: str = "127.0.0.1",
        port: int = VPCD_PORT,
        netns: str = "auto",
        quickack: bool = True,
        reconnect_interval_s: float = RECONNECT_INTERVAL_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        send_timeout_s: float = SEND_TIMEOUT_S,
    ) -> None:
        self.icc = icc
        self.host, self.port, self.netns = host, port, netns
        self.quickack = quickack
        self._reconnect_interval_s = reconnect_interval_s
        self._connect_timeout_s = connect_timeout_s
        self._send_timeout_s = send_timeout_s
        self._lock = threading.RLock()  # stop() may run in a signal handler on run()'s thread
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._changed = threading.Condition(self._lock)
        self._state = VpiccState.idle
        self._thread: threading.Thread | None = None
        self.apdus = 0  # command APDUs answered (for tests and logs)
        self.connections = 0  # successful connections to vpcd

    def __repr__(self) -> str:
        return f"Vpicc({self.host}:{self.port}, {self._state.value})"

    @property
    def state(self) -> VpiccState:
        return self._state

    def _set_state(self, state: VpiccState) -> None:
        with self._changed:
            if self._state is not VpiccState.stopped:
                self._state = state
            self._changed.notify_all()

    def wait_connected(self, timeout_s: float) -> bool:
        """Until vpcd accepted us (pcscd needs up to ~400 ms more to see the card)."""
        with self._changed:
            return self._changed.wait_for(
                lambda: self._state in (VpiccState.connected, VpiccState.stopped), timeout_s
            ) and (self._state is VpiccState.connected)

    def start(self) -> None:
        """Serve on a daemon thread (tests); `run()` serves on the calling thread."""
        if self._state is not VpiccState.idle:
            raise RuntimeError(f"cannot start: the vpicc is {self._state.value}")
        self._thread = threading.Thread(target=self.run, name=f"vpicc-{self.port}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Remove the card: end the loop, close the socket. Idempotent."""
        self._stop.set()
        with self._changed:
            self._state = VpiccState.stopped
            self._changed.notify_all()
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
            if thread.is_alive():
                raise TimeoutError(f"vpicc on port {self.port} did not stop in {timeout_s}s")

    def run(self) -> None:
        """Connect, serve until vpcd hangs up, reconnect; until `stop()`."""
        self._set_state(VpiccState.connecting)
        try:
            while not self._stop.is_set():
                sock = self._connect()
                if sock is None:
                    self._stop.wait(self._reconnect_interval_s)
                    continue
                try:
                    self._serve(sock)
                except OSError as exc:
                    if not self._stop.is_set():
                        log.info("vpicc %s: connection lost: %s", self.port, exc)
                finally:
                    with self._lock:
                        self._sock = None
                    sock.close()
                    self.icc.power_off()
                self._set_state(VpiccState.connecting)
                self._stop.wait(self._reconnect_interval_s)
        finally:
            self._set_state(VpiccState.stopped)

    def _connect(self) -> socket.socket | None:
        try:
            netns = pcscd_netns() if self.netns == "auto" else None
            if self.netns not in ("auto", "none"):
                netns = Path(self.netns)
            sock = socket_in_netns(netns)
        except OSError as exc:
            log.warning("vpicc %s: %s", self.port, exc)
            return None
        try:
            sock.settimeout(self._connect_timeout_s)
            sock.connect((self.host, self.port))
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sndtimeo = struct.pack("ll", int(self._send_timeout_s), 0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, sndtimeo)
        except OSError as exc:
            sock.close()
            log.debug("vpicc %s: vpcd not reachable: %s", self.port, exc)
            return None
        with self._lock:
            if self._stop.is_set():
                sock.close()
                return None
            self._sock = sock
        self.connections += 1
        self._set_state(VpiccState.connected)
        log.info("vpicc %s: connected to vpcd", self.port)
        return sock

    def _recv_exact(self, sock: socket.socket, size: int) -> bytes | None:
        if self.quickack:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        data = sock.recv(size, socket.MSG_WAITALL)
        return data if len(data) == size else None

    def _serve(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            head = self._recv_exact(sock, 2)
            if head is None:
                return  # vpcd closed the connection (pcscd stopped or reader closed)
            (size,) = struct.unpack(">H", head)
            payload = self._recv_exact(sock, size) if size else b""
            if payload is None:
                return
            answer = self._answer(payload)
            if answer is not None:
                sock.sendall(struct.pack(">H", len(answer)) + answer)

    def _answer(self, payload: bytes) -> bytes | None:
        if len(payload) == 1:
            control = payload[0]
            if control == CTRL_GET_ATR:
                return self.icc.atr
            if control == CTRL_POWER_OFF:
                self.icc.power_off()
            elif control in (CTRL_POWER_ON, CTRL_RESET):
                self.icc.power_on()
            else:
                log.warning("vpicc %s: unknown control byte %02X ignored", self.port, control)
            return None
        self.apdus += 1
        try:
            answer = self.icc.transmit(payload)
        except Exception:  # the Icc contract says never; a card must not vanish for it
            log.exception("vpicc %s: the card raised on %s", self.port, payload[:4].hex())
            return _ERROR_ANSWER
        if len(answer) > FRAME_MAX:
            log.error("vpicc %s: answer of %d bytes does not fit a frame", self.port, len(answer))
            return _ERROR_ANSWER
        return answer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simulators.vpicc",
        description="Serve a virtual social security card to vpcd (pcscd's virtual reader).",
    )
    card = parser.add_mutually_exclusive_group(required=True)
    card.add_argument("--index", type=int, help="person index in the synthetic population")
    card.add_argument("--blank", action="store_true", help="a chip with no application")
    parser.add_argument("--mode", default="genuine", help="genuine|clone|expired|pin-blocked")
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--persons", type=int, default=10_000)
    parser.add_argument("--slot", type=int, default=0, choices=range(VPCD_SLOTS))
    parser.add_argument("--port", type=int, default=VPCD_PORT, help="vpcd port of slot 0")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--netns", default="auto", help="auto | none | a /proc/PID/ns/net path")
    parser.add_argument("--no-quickack", action="store_true", help="reproduce the 44 ms stall")
    parser.add_argument(
        "--card-keys",
        choices=["-"],
        help="- : read this card's keys from standard input (as `sim card insert` does)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


class WireKey(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    algorithm: str
    hex: str


class WireCardKeys(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One card's keys on the pipe from `sim card insert` to its vpicc."""

    internal_auth: WireKey
    external_auth: WireKey
    icc_master_ac: WireKey


CARD_KEYS_BYTES_MAX = 1024  # three keys in hex, with their names


def encode_card_keys(keys: CardKeys) -> bytes:
    """One JSON line for `--card-keys -` (a pipe only: it holds the card's keys)."""

    def wire(key: SecretKey) -> WireKey:
        return WireKey(key.algorithm.value, key.material.hex())

    return (
        msgspec.json.encode(
            WireCardKeys(
                wire(keys.internal_auth), wire(keys.external_auth), wire(keys.icc_master_ac)
            )
        )
        + b"\n"
    )


def decode_card_keys(data: bytes) -> CardKeys:
    from hsm.errors import HsmError
    from hsm.keys import Algorithm, SecretKey
    from simulators.card.keys import CardKeys

    try:
        found = msgspec.json.decode(data.strip(), type=WireCardKeys)
        return CardKeys(
            *(
                SecretKey(Algorithm(k.algorithm), bytes.fromhex(k.hex))
                for k in (found.internal_auth, found.external_auth, found.icc_master_ac)
            )
        )
    except (msgspec.DecodeError, ValueError, HsmError) as exc:  # no key bytes in messages
        raise SystemExit(f"vpicc: --card-keys: not a card's keys ({type(exc).__name__})") from None


def build_icc(args: argparse.Namespace, card_keys_data: bytes | None = None) -> Icc:
    """The card the arguments name: person `--index` of the seeded population, with
    the keys in `card_keys_data` (`encode_card_keys`), a clone's invented ones, or
    keys derived from the issuer masters of the demo key file (IssuerMasters.from_env)."""
    from simulators.card.card import VirtualCard

    if args.blank:
        return VirtualCard([], generation=3)
    from simulators.card.app import CardApplication, CardMode
    from simulators.card.keys import IssuerMasters, card_keys, clone_keys
    from simulators.card.pboc import PbocApplication
    from simulators.card.ssse import SsseApplication
    from simulators.population import generate

    if not 0 <= args.index < args.persons:
        raise SystemExit(f"vpicc: --index must be in 0..{args.persons - 1}")
    try:
        mode = CardMode(args.mode)
    except ValueError:
        raise SystemExit(f"vpicc: unknown --mode {args.mode!r}") from None
    pop = generate(args.seed, args.persons)  # the same population the engine was seeded with
    card, person = pop.card(args.index), pop.persons[args.index]
    if card_keys_data is not None:
        keys = decode_card_keys(card_keys_data)
    elif mode is CardMode.clone:
        keys = clone_keys(card)
    else:
        keys = card_keys(IssuerMasters.from_env(), card)
    # As simulators.card.factory.build_card, from the keys rather than the masters.
    apps: list[CardApplication] = [
        SsseApplication(card, person, keys, mode),
        PbocApplication(card, person, keys),
    ]
    return VirtualCard(apps, generation=card.generation)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    keys = sys.stdin.buffer.read(CARD_KEYS_BYTES_MAX) if args.card_keys == "-" else None
    icc = build_icc(args, keys)
    vpicc = Vpicc(
        icc,
        host=args.host,
        port=args.port + args.slot,
        netns=args.netns,
        quickack=not args.no_quickack,
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        vpicc.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("vpicc: serving %s on slot %d (port %d)", icc.atr.hex(), args.slot, vpicc.port)
    vpicc.run()  # on the main thread: the signal handler's stop() wakes it
    return 0


if __name__ == "__main__":
    sys.exit(main())
