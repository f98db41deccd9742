"""One thread for every PKCS#11 call of the process, with one logged-in session.

python-pkcs11 initialises the library without locking, and SoftHSM2 then turns its
mutexes off: two threads calling into the token abort the process
(TOOLCHAIN.md §2.3). Login state also belongs to the process: closing the session
that logged in logs every session out. So the PKCS#11 backend sends every call through
this worker: a single dedicated thread that loads the module, opens the token and
logs in once for the life of the process, and runs callables `fn(session)` in order.
The event loop never blocks on the token; each call has a deadline; the queue of
waiting calls is bounded. Scale with worker processes, not threads.

Errors say what is wrong without secrets: a module that cannot be loaded, a token
label that does not exist, a wrong PIN, a key label not on the token.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


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


class Pkcs11Worker:
    def __init__(
        self, module_path: str, token_label: str, user_pin: str, *, max_waiting: int
    ) -> None:
        self._module_path = module_path
        self._token_label = token_label
        self._user_pin = user_pin
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="pkcs11"
        )
        self._slots = asyncio.Semaphore(max_waiting)
        self._session: Any = None
        self.state = WorkerState.new

    def __repr__(self) -> str:
        return f"Pkcs11Worker(module={self._module_path!r}, token={self._token_label!r}, state={self.state.value})"

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
            self._session = token.open(user_pin=self._user_pin, rw=True)
        except (px.PinIncorrect, px.PinInvalid, px.PinLenRange, px.PinLocked, px.PinExpired) as exc:
            raise Pkcs11PinError(
                f"user PIN refused by token {self._token_label!r} ({type(exc).__name__})"
            ) from exc

    async def start(self, *, deadline_s: float) -> None:
        if self.state is not WorkerState.new:
            raise Pkcs11Error(f"start() on a worker that is {self.state.value}")
        await self._submit(self._open, deadline_s)
        self.state = WorkerState.open

    async def call(self, fn: Callable[[Any], T], *, deadline_s: float) -> T:
        """Run `fn(session)` on the token thread; raise Pkcs11Timeout past the deadline."""
        if self.state is not WorkerState.open:
            raise Pkcs11Error(f"call() on a worker that is {self.state.value}")
        session = self._session
        return await self._submit(lambda: fn(session), deadline_s)

    async def _submit(self, fn: Callable[[], T], deadline_s: float) -> T:
        if self._slots.locked():
            raise Pkcs11Busy("too many PKCS#11 calls waiting")
        async with self._slots:
            future = asyncio.get_running_loop().run_in_executor(self._executor, fn)
            try:
                return await asyncio.wait_for(asyncio.shield(future), deadline_s)
            except TimeoutError:
                raise Pkcs11Timeout(f"PKCS#11 call exceeded {deadline_s}s") from None

    async def close(self) -> None:
        """Close the session on the token thread, then stop the thread. Idempotent."""
        if self.state is WorkerState.closed:
            return
        session, self._session = self._session, None
        if session is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, session.close)
        self._executor.shutdown(wait=True)
        self.state = WorkerState.closed


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
