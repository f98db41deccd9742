"""One thread for every PKCS#11 call of the process, with one logged-in session.

python-pkcs11 initialises the library without locking, and SoftHSM2 then turns its
mutexes off: two threads calling into the token abort the process
(TOOLCHAIN.md §2.3). Login state also belongs to the process: closing the session
that logged in logs every session out. So the PKCS#11 backend sends every call through
this worker: a single dedicated thread that loads the module, opens the token and
logs in once for the life of the process, and runs callables `fn(session)` in order.
The event loop never blocks on the token; each call has a deadline; the number of
calls submitted and not yet answered is bounded. Scale with worker processes, not
threads.

Why a hand-made thread and queue rather than an executor: on these VMs a thread hop
(wake the token thread, wake the event loop) is the largest cost of a PKCS#11
operation after the token's own work; `run_in_executor` + `wait_for` + `shield` cost
~250 µs per call against ~110 µs for a plain queue and one loop callback. The thread
also **batches**: at each wake-up it takes every call already queued (up to
`BATCH_MAX`), runs them in order and hands all results to the event loop in one
callback, so N calls in flight cost one pair of wake-ups, not N. A call whose deadline
has passed before the thread reaches it is not run at all.

Errors say what is wrong without secrets: a module that cannot be loaded, a token
label that does not exist, a wrong PIN, a key label not on the token.
"""

from __future__ import annotations

import asyncio
import enum
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from hsm import pkcs11_keys
from hsm.pkcs11_raw import RawSession

T = TypeVar("T")

# Calls run back to back before their results go to the event loop: bounds the delay a
# batch adds to its first call (16 × ~0.1 ms on SoftHSM2) while amortising wake-ups.
BATCH_MAX = 16
CLOSE_DEADLINE_S = 10.0  # logging out waits for the calls queued before it
JOIN_S = 1.0  # the thread ends right after the logout job; this only guards a bug


class Pkcs11Error(Exception):
    """Base of the worker's errors."""


class Pkcs11ModuleError(Pkcs11Error):
    """The PKCS#11 module (shared library) could not be loaded."""


class Pkcs11TokenError(Pkcs11Error):
    """No token with the configured label, or it cannot be opened."""


class Pkcs11PinError(Pkcs11Error):
    """The user PIN was refused (or the PIN is locked)."""


class Pkcs11KeyNotFound(Pkcs11Error):
    """No key object with that label (and type) on the token."""


class Pkcs11Timeout(Pkcs11Error):
    """A call did not finish within its deadline (it may still complete on the thread)."""


class Pkcs11Busy(Pkcs11Error):
    """Too many calls are waiting for the token; try again."""


class WorkerState(enum.Enum):
    new = "new"
    open = "open"
    closed = "closed"


class _Job(Generic[T]):
    """One call: filled in on the token thread, settled on the event loop."""

    __slots__ = ("expires_at", "fn", "future", "loop", "outcome", "raised")

    def __init__(
        self,
        fn: Callable[[], T],
        future: asyncio.Future[T],
        loop: asyncio.AbstractEventLoop,
        expires_at: float,
    ) -> None:
        self.fn, self.future, self.loop, self.expires_at = fn, future, loop, expires_at
        self.outcome: Any = None
        self.raised = False

    def run(self) -> None:
        if time.monotonic() >= self.expires_at:
            self.outcome, self.raised = Pkcs11Timeout("PKCS#11 call expired in the queue"), True
            return
        try:
            self.outcome = self.fn()
        except Exception as exc:  # handed to the caller, whatever it is
            self.outcome, self.raised = exc, True


class Pkcs11Worker:
    def __init__(
        self, module_path: str, token_label: str, user_pin: str, *, max_waiting: int
    ) -> None:
        if max_waiting < 1:
            raise ValueError(f"max_waiting must be >= 1, got {max_waiting}")
        self._module_path = module_path
        self._token_label = token_label
        self._user_pin = user_pin
        self._max_waiting = max_waiting
        self._waiting = 0  # submitted and not yet settled; event-loop side only
        self._jobs: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        # Daemon: a worker that was never closed must not hold the interpreter open.
        self._thread = threading.Thread(target=self._serve, name="pkcs11", daemon=True)
        self._session: Any = None
        self._raw: RawSession | None = None
        self.calls = 0  # run on the token thread (written there only)
        self.batches = 0  # wake-ups of the token thread that ran calls
        self.state = WorkerState.new

    def __repr__(self) -> str:
        return f"Pkcs11Worker(module={self._module_path!r}, token={self._token_label!r}, state={self.state.value})"

    @property
    def raw(self) -> RawSession:
        """Direct function-list calls on the worker's session (hsm.pkcs11_raw); only
        for callables running on the token thread."""
        if self._raw is None:
            raise Pkcs11Error(f"raw session of a worker that is {self.state.value}")
        return self._raw

    # -- the token thread ------------------------------------------------------------------

    def _serve(self) -> None:
        stopping = False
        while not stopping:
            first = self._jobs.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < BATCH_MAX:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                batch.append(job)
            for job in batch:
                job.run()
            self.calls += len(batch)
            self.batches += 1
            self._hand_back(batch)

    def _hand_back(self, batch: list[_Job[Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Job[Any]]] = {}
        for job in batch:
            by_loop.setdefault(job.loop, []).append(job)
        for loop, jobs in by_loop.items():
            try:
                loop.call_soon_threadsafe(self._settle, jobs)
            except RuntimeError:  # that loop is closed: nobody waits for these
                continue

    # -- the event loop ----------------------------------------------------------------------

    def _settle(self, jobs: list[_Job[Any]]) -> None:
        for job in jobs:
            self._waiting -= 1
            if job.future.done():  # the caller's deadline passed, or it was cancelled
                continue
            if job.raised:
                job.future.set_exception(job.outcome)
            else:
                job.future.set_result(job.outcome)

    @staticmethod
    def _expire(future: asyncio.Future[Any], deadline_s: float) -> None:
        if not future.done():
            future.set_exception(Pkcs11Timeout(f"PKCS#11 call exceeded {deadline_s}s"))

    async def _submit(self, fn: Callable[[], T], deadline_s: float, *, bounded: bool = True) -> T:
        if bounded and self._waiting >= self._max_waiting:
            raise Pkcs11Busy("too many PKCS#11 calls waiting")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._waiting += 1
        self._jobs.put(_Job(fn, future, loop, time.monotonic() + deadline_s))
        timer = loop.call_later(deadline_s, self._expire, future, deadline_s)
        try:
            return await future
        finally:
            timer.cancel()

    async def start(self, *, deadline_s: float) -> None:
        if self.state is not WorkerState.new:
            raise Pkcs11Error(f"start() on a worker that is {self.state.value}")
        self._thread.start()
        await self._submit(self._open, deadline_s)
        self.state = WorkerState.open

    def _open(self) -> None:
        import pkcs11
        import pkcs11.exceptions as px

        try:
            lib = pkcs11.lib(self._module_path)
        except px.PKCS11Error as exc:
            raise Pkcs11ModuleError(f"cannot load PKCS#11 module {self._module_path}") from exc
        try:
            token = lib.get_token(token_label=self._token_label)
        except (px.NoSuchToken, px.MultipleTokensReturned) as exc:
            raise Pkcs11TokenError(f"no single token labelled {self._token_label!r}") from exc
        try:
            session: Any = token.open(user_pin=self._user_pin, rw=True)
        except (px.PinIncorrect, px.PinInvalid, px.PinLenRange, px.PinLocked, px.PinExpired) as exc:
            raise Pkcs11PinError(
                f"user PIN refused by token {self._token_label!r} ({type(exc).__name__})"
            ) from exc
        try:
            self._raw = RawSession(self._module_path, session.handle)
        except BaseException:
            session.close()
            raise
        pkcs11_keys.forget_handles(destroy_copies=False)  # an earlier session's handles
        self._session = session

    @staticmethod
    def _logout(session: Any) -> None:
        try:
            pkcs11_keys.forget_handles()  # destroys the session copies of stored keys
        finally:
            session.close()

    async def call(self, fn: Callable[[Any], T], *, deadline_s: float) -> T:
        """Run `fn(session)` on the token thread; raise Pkcs11Timeout past the deadline
        and Pkcs11Busy when `max_waiting` calls are already submitted."""
        if self.state is not WorkerState.open:
            raise Pkcs11Error(f"call() on a worker that is {self.state.value}")
        session = self._session
        return await self._submit(lambda: fn(session), deadline_s)

    async def close(self) -> None:
        """Log out (after the calls already queued) and end the token thread.
        Idempotent. Waits at most CLOSE_DEADLINE_S for the queue ahead of it."""
        if self.state is WorkerState.closed:
            return
        self.state = WorkerState.closed
        session, self._session, self._raw = self._session, None, None
        if not self._thread.is_alive():
            return
        try:
            if session is not None:
                await self._submit(lambda: self._logout(session), CLOSE_DEADLINE_S, bounded=False)
        finally:
            self._jobs.put(None)
        self._thread.join(JOIN_S)


def find_key(session: Any, label: str, key_class: Any = None) -> Any:
    """The one key object labelled `label` (on the token thread)."""
    import pkcs11
    import pkcs11.exceptions as px

    try:
        return session.get_key(label=label, object_class=key_class or pkcs11.ObjectClass.SECRET_KEY)
    except px.NoSuchKey as exc:
        raise Pkcs11KeyNotFound(f"no key labelled {label!r} on the token") from exc
    except px.MultipleObjectsReturned as exc:
        raise Pkcs11KeyNotFound(f"more than one key labelled {label!r} on the token") from exc
