"""`PcscReader`: the `card.reader.Reader` protocol on pyscard's raw PC/SC calls
(`smartcard.scard`) through pcscd, for real readers and the vsmartcard virtual one.

Deadlines. pyscard's calls block in C and cannot be interrupted; pcsc-lite's
SCardCancel only ends SCardGetStatusChange, and another context cannot unblock a
transmit either (the driver serialises a slot's exchanges while it waits for the card).
So every PC/SC call runs on the reader's worker thread and the caller waits for it
with its deadline. When the deadline passes, the caller gets `ReaderTimeout` at once
and the worker is *abandoned*: it is left to finish the stuck call, then releases the
card handle (SCARD_LEAVE_CARD, so that it cannot reset a card someone inserted since)
and the context it was using, and ends. The reader forgets both and starts a new
worker and context on its next call; the next `connect()` cold-resets the card
(SCardReconnect with SCARD_UNPOWER_CARD), since the card was left powered in an
unknown state. A reader whose card never answers again therefore holds one stuck
thread and one pcscd client until the card or pcscd goes away; that is the price of
returning on time. The hand-off costs two thread switches per call (see
tests/bench/test_pcsc_bench.py for the figure).

Errors. Every PC/SC return code becomes one of the `card.reader` classes, chained
from pyscard's `BaseSCardException` carrying the code:
- pcscd down or restarted, context or handle invalid, reader unknown or gone, reader
  held exclusively by another program → `ReaderUnavailable`;
- no card (connect) → `NoCard`; card removed or reset by someone else while
  connected → `CardRemoved`;
- unresponsive (mute) card, PC/SC timeout, our deadline → `ReaderTimeout`;
- anything else → `ReaderError`.
A dead context (pcscd stopped or restarted: SCARD_E_NO_SERVICE, SERVICE_STOPPED,
INVALID_HANDLE, F_COMM_ERROR) is dropped; the next call establishes a new one. Calls
that need no card session (presence, waiting, connect) retry once at once with a
fresh context when the old one turns out dead, so a pcscd restart between two card
sessions is invisible; a transmit on a handle of the old pcscd raises
`ReaderUnavailable` (the card's session is gone with it).

A `PcscReader` is used from one thread at a time (reader.py: async callers give each
reader its own thread); the worker thread is its own.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from smartcard import scard
from smartcard.pcsc.PCSCExceptions import BaseSCardException

from card.apdu import ApduError, CommandApdu, ResponseApdu
from card.reader import CardRemoved, NoCard, ReaderError, ReaderTimeout, ReaderUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

CONTEXT_TIMEOUT_S = 2.0  # establish/list/status/disconnect: calls without a caller deadline
PROTOCOLS = {
    "T0": scard.SCARD_PROTOCOL_T0,
    "T1": scard.SCARD_PROTOCOL_T1,
    "any": scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
}
PROTOCOL_NAMES = {scard.SCARD_PROTOCOL_T0: "T=0", scard.SCARD_PROTOCOL_T1: "T=1"}

_DEAD_CONTEXT = frozenset(
    {
        scard.SCARD_E_NO_SERVICE,
        scard.SCARD_E_SERVICE_STOPPED,
        scard.SCARD_E_INVALID_HANDLE,
        scard.SCARD_F_COMM_ERROR,
    }
)
_UNAVAILABLE = _DEAD_CONTEXT | {
    scard.SCARD_E_NO_READERS_AVAILABLE,
    scard.SCARD_E_UNKNOWN_READER,
    scard.SCARD_E_READER_UNAVAILABLE,
    scard.SCARD_E_SHARING_VIOLATION,
}
_CARD_GONE = frozenset(
    {scard.SCARD_W_REMOVED_CARD, scard.SCARD_W_RESET_CARD, scard.SCARD_E_NO_SMARTCARD}
)
_NOT_ANSWERING = frozenset({scard.SCARD_W_UNRESPONSIVE_CARD, scard.SCARD_E_TIMEOUT})
# What a transmit fails with when the driver lost the card before pcscd's presence
# poll noticed (vpcd: the vpicc hung up): removal is then checked for (see transmit).
_TRANSMIT_FAILED = frozenset({scard.SCARD_E_NOT_TRANSACTED, scard.SCARD_E_COMM_DATA_LOST})
REMOVAL_CHECK_S = 1.0  # pcscd polls non-hotplug readers every 400 ms


def _code(rv: int) -> str:
    return f"0x{rv & 0xFFFFFFFF:08X}"


def pcsc_error(rv: int, what: str, *, connected: bool = False) -> ReaderError:
    """The `card.reader` error for PC/SC return code `rv`, chained from pyscard's."""
    cause = BaseSCardException(hresult=rv, message=what)
    text = f"{what}: {scard.SCardGetErrorMessage(rv)} ({_code(rv)})"
    if rv in _UNAVAILABLE:
        error: ReaderError = ReaderUnavailable(text)
    elif rv in _CARD_GONE:
        error = CardRemoved(text) if connected else NoCard(text)
    elif rv in _NOT_ANSWERING:
        error = ReaderTimeout(text)
    else:
        error = ReaderError(text)
    error.__cause__ = cause
    return error


def list_readers(*, timeout_s: float = CONTEXT_TIMEOUT_S) -> list[str]:
    """The names of the readers pcscd knows; `ReaderUnavailable` when pcscd is down
    (or does not answer within `timeout_s`)."""
    worker = _Worker("pcsc-list")

    def work() -> tuple[int, list[str]]:
        rv, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if rv != scard.SCARD_S_SUCCESS:
            return rv, []
        try:
            rv, names = scard.SCardListReaders(ctx, [])
            return rv, list(names or [])
        finally:
            scard.SCardReleaseContext(ctx)

    try:
        rv, names = worker.run(work, timeout_s)
    except _Stuck:
        worker.abandon(lambda: None)
        raise ReaderUnavailable(f"pcscd did not list its readers within {timeout_s}s") from None
    worker.stop()
    if rv == scard.SCARD_E_NO_READERS_AVAILABLE:
        return []
    if rv != scard.SCARD_S_SUCCESS:
        raise pcsc_error(rv, "listing readers")
    return names


class _Stuck(Exception):
    """The worker did not finish a call within the caller's deadline."""


class _Job:
    __slots__ = ("done", "error", "fn", "result")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class _Worker:
    """A daemon thread running one PC/SC call at a time, so that callers can stop
    waiting for a call that does not return."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job.result = job.fn()
            except BaseException as exc:  # handed to the waiting caller
                job.error = exc
            job.done.set()

    def run(self, fn: Callable[[], T], timeout_s: float) -> T:
        job = _Job(fn)
        self._jobs.put(job)
        if not job.done.wait(max(0.0, timeout_s)):
            raise _Stuck
        if job.error is not None:
            raise job.error
        result: T = job.result
        return result

    def submit(self, fn: Callable[[], object]) -> None:
        """Run `fn` after what is queued, without waiting for it."""
        self._jobs.put(_Job(fn))

    def abandon(self, cleanup: Callable[[], object]) -> None:
        """The caller gave up on the running call: once it returns, run `cleanup`
        and end the thread."""
        self._jobs.put(_Job(cleanup))
        self._jobs.put(None)

    def stop(self) -> None:
        self._jobs.put(None)


class PcscReader:
    """One PC/SC reader slot; see the module docstring."""

    def __init__(
        self,
        name: str,
        *,
        context_timeout_s: float = CONTEXT_TIMEOUT_S,
        protocols: str = "any",
    ) -> None:
        if protocols not in PROTOCOLS:
            raise ValueError(f"protocols must be one of {sorted(PROTOCOLS)}, got {protocols!r}")
        self._name = name
        self._context_timeout_s = context_timeout_s
        self._protocols = PROTOCOLS[protocols]
        self._worker: _Worker | None = None
        self._ctx: int | None = None
        self._card: int | None = None
        self._protocol = 0
        self._cold_reset_due = False  # a session ended without powering the card off

    def __repr__(self) -> str:
        state = "connected" if self._card is not None else "idle"
        return f"PcscReader({self._name!r}, {state})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def protocol(self) -> str | None:
        """The protocol in use while connected: "T=0" or "T=1"."""
        return PROTOCOL_NAMES.get(self._protocol) if self._card is not None else None

    # -- plumbing ---------------------------------------------------------------

    def _call(self, fn: Callable[[], T], timeout_s: float, what: str) -> T:
        """Run `fn` on the worker; on deadline abandon the worker with the context
        and handle it holds, and raise ReaderTimeout."""
        if self._worker is None:
            self._worker = _Worker(f"pcsc-{self._name}")
        try:
            return self._worker.run(fn, timeout_s)
        except _Stuck:
            self._abandon()
            raise ReaderTimeout(
                f"{self._name}: {what}: no answer within {timeout_s:.3f}s"
            ) from None

    def _abandon(self) -> None:
        worker, ctx, card = self._worker, self._ctx, self._card
        self._worker, self._ctx, self._card = None, None, None
        self._cold_reset_due = True

        def release() -> None:
            if card is not None:
                scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)
            if ctx is not None:
                scard.SCardReleaseContext(ctx)

        if worker is not None:
            worker.abandon(release)

    def _forget_context(self) -> None:
        """pcscd is gone or restarted: the context and any handle are dead."""
        ctx, self._ctx, self._card = self._ctx, None, None
        if ctx is not None and self._worker is not None:
            self._worker.submit(lambda: scard.SCardReleaseContext(ctx))

    def _context(self, end: float) -> int:
        if self._ctx is None:
            rv, ctx = self._call(
                lambda: scard.SCardEstablishContext(scard.SCARD_SCOPE_USER),
                min(self._context_timeout_s, end - time.monotonic()),
                "establishing a PC/SC context",
            )
            if rv != scard.SCARD_S_SUCCESS:
                raise pcsc_error(rv, f"{self._name}: cannot reach pcscd")
            self._ctx = ctx
        return self._ctx

    def _ctx_call(
        self, fn: Callable[[int], tuple[Any, ...]], end: float, what: str
    ) -> tuple[Any, ...]:
        """A call on the context that needs no card session; retried once with a new
        context if the one we held died (pcscd restarted since)."""
        for attempt in range(2):
            held = self._ctx is not None
            ctx = self._context(end)
            result = self._call(functools.partial(fn, ctx), end - time.monotonic(), what)
            if result[0] in _DEAD_CONTEXT:
                self._forget_context()
                if held and attempt == 0:
                    continue
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _fail(self, rv: int, what: str, *, connected: bool = False) -> NoReturn:
        if rv in _DEAD_CONTEXT:
            self._forget_context()
        raise pcsc_error(rv, f"{self._name}: {what}", connected=connected)

    # -- presence ---------------------------------------------------------------

    def _wait_state(self, want_present: bool, timeout_s: float) -> bool:
        end = time.monotonic() + max(0.0, timeout_s)
        current = scard.SCARD_STATE_UNAWARE
        while True:
            wait_ms = int(max(0.0, end - time.monotonic()) * 1000)

            def status(ctx: int, wait_ms: int = wait_ms, current: int = current) -> tuple[Any, ...]:
                rv, states = scard.SCardGetStatusChange(ctx, wait_ms, [(self._name, current)])
                return rv, states

            grace = end + self._context_timeout_s  # pcscd answers after wait_ms at the latest
            rv, states = self._ctx_call(status, grace, "waiting for a card state change")
            if rv == scard.SCARD_E_TIMEOUT:
                return False
            if rv != scard.SCARD_S_SUCCESS:
                self._fail(rv, "reading the reader state")
            event = states[0][1]
            if event & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE):
                raise ReaderUnavailable(f"{self._name}: pcscd knows no such reader (or it is gone)")
            if bool(event & scard.SCARD_STATE_PRESENT) == want_present:
                return True
            if wait_ms == 0:
                return False
            current = event & ~scard.SCARD_STATE_CHANGED

    def card_present(self) -> bool:
        return self._wait_state(True, 0.0)

    def wait_for_card(self, timeout_s: float) -> bool:
        return self._wait_state(True, timeout_s)

    def wait_for_removal(self, timeout_s: float) -> bool:
        return self._wait_state(False, timeout_s)

    # -- card session -------------------------------------------------------------

    def connect(self, *, deadline_s: float) -> bytes:
        end = time.monotonic() + deadline_s
        if deadline_s <= 0:
            raise ReaderTimeout(f"{self._name}: no time left to connect")
        if self._card is not None:
            self.disconnect()
        name, protocols = self._name, self._protocols

        def connect(ctx: int) -> tuple[Any, ...]:
            rv, card, protocol = scard.SCardConnect(ctx, name, scard.SCARD_SHARE_SHARED, protocols)
            return rv, card, protocol

        rv, card, protocol = self._ctx_call(connect, end, "connecting")
        if rv != scard.SCARD_S_SUCCESS:
            self._fail(rv, "connecting to the card")
        self._card, self._protocol = card, protocol
        try:
            if self._cold_reset_due:
                rv, protocol = self._call(
                    lambda: scard.SCardReconnect(
                        card, scard.SCARD_SHARE_SHARED, protocols, scard.SCARD_UNPOWER_CARD
                    ),
                    end - time.monotonic(),
                    "cold reset",
                )
                if rv != scard.SCARD_S_SUCCESS:
                    self._fail(rv, "cold-resetting the card", connected=True)
                self._protocol = protocol
                self._cold_reset_due = False
            rv, _, _, _, atr = self._call(
                lambda: scard.SCardStatus(card), end - time.monotonic(), "reading the ATR"
            )
            if rv != scard.SCARD_S_SUCCESS:
                self._fail(rv, "reading the ATR", connected=True)
        except ReaderError:
            self._drop_card()
            raise
        return bytes(atr)

    def transmit(self, command: CommandApdu, *, deadline_s: float) -> ResponseApdu:
        card, protocol = self._card, self._protocol
        if card is None:
            raise NoCard(f"{self._name}: not connected to a card")
        if deadline_s <= 0:
            self._drop_card()
            raise ReaderTimeout(f"{self._name}: no time left to send {command.ins:02X}")
        apdu = list(command.encode())

        def transmit() -> tuple[int, list[int]]:
            rv, response = scard.SCardTransmit(card, protocol, apdu)
            return rv, response

        end = time.monotonic() + deadline_s
        rv, response = self._call(transmit, deadline_s, f"INS {command.ins:02X}")
        if rv != scard.SCARD_S_SUCCESS:
            self._drop_card()
            what = f"sending INS {command.ins:02X}"
            if rv in _TRANSMIT_FAILED and self._removed_within(end):
                raise CardRemoved(f"{self._name}: the card was removed") from pcsc_error(rv, what)
            self._fail(rv, what, connected=True)
        try:
            return ResponseApdu.decode(bytes(response))
        except ApduError as exc:
            raise ReaderError(f"{self._name}: the card answered a malformed response") from exc

    def _removed_within(self, end: float) -> bool:
        """After a failed transmit: did the card leave? Asked of pcscd until its next
        presence poll at most, within what is left of the caller's deadline."""
        wait_s = min(REMOVAL_CHECK_S, end - time.monotonic())
        try:
            return wait_s > 0 and self._wait_state(False, wait_s)
        except ReaderError:
            return False

    def _drop_card(self) -> None:
        """Forget the session without waiting: the handle is let go in the background
        and the next connect() cold-resets the card."""
        card, self._card = self._card, None
        if card is not None and self._worker is not None:
            self._worker.submit(lambda: scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD))
            self._cold_reset_due = True

    def disconnect(self) -> None:
        """Power the card off (SCARD_UNPOWER_CARD); harmless when not connected. A card
        already gone, or pcscd gone, is not an error here."""
        card, self._card = self._card, None
        if card is None:
            return
        try:
            rv = self._call(
                lambda: scard.SCardDisconnect(card, scard.SCARD_UNPOWER_CARD),
                self._context_timeout_s,
                "disconnecting",
            )
        except ReaderTimeout:
            log.warning("%s: disconnect did not return; the card is left to pcscd", self._name)
            return
        if rv in _DEAD_CONTEXT:
            self._forget_context()
        elif rv != scard.SCARD_S_SUCCESS:
            log.debug("%s: disconnect: %s", self._name, scard.SCardGetErrorMessage(rv))

    def close(self) -> None:
        """Disconnect, release the context and end the worker thread."""
        self.disconnect()
        ctx, self._ctx = self._ctx, None
        worker, self._worker = self._worker, None
        if worker is not None:
            if ctx is not None:
                worker.submit(lambda: scard.SCardReleaseContext(ctx))
            worker.stop()

    def __enter__(self) -> PcscReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
