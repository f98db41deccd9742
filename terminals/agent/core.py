"""`CardAgent`: one reader, one engine client, the card-authentication flow.

Card I/O is blocking (PC/SC), so every card step runs on the agent's own single
thread (`card_executor`); the engine calls run on the event loop. One flow at a time
per reader (`_busy` lock): a card is a single-threaded device and two interleaved
sessions would break each other's challenges. A flow that finds the reader busy waits
in a short, bounded queue (`queue_wait_s`, `queue_max`) and is then answered
`agent_busy`.

The flow (DOMAIN.md §3.3, DESIGN.md §4), in this order so that a card the issuer
would refuse never costs a PIN try:
 0. the PIN's form (ASCII digits, 4..16) and, in require-PIN mode, its presence are
    checked before any card or engine work: a bad PIN burns no challenge;
 1. power on, SELECT SSSE, read EF05 (card_sn, version → generation and algorithm);
    a card whose EF05 expiry date has passed is refused here (`card_expired`);
 2. GET CHALLENGE → process factor for INTERNAL AUTHENTICATE; generation 3 also GET
    CHALLENGE ×2 → process factor and challenge for EXTERNAL AUTHENTICATE (the card
    keeps only its last challenge, so that one comes last);
 3. 9301 → the engine's challenge (single use, 60 s, bound to this terminal and card)
    and, for generation 3, the external-authentication cryptogram from its HSM;
 4. EXTERNAL AUTHENTICATE (generation 3: unlocks EF06), INTERNAL AUTHENTICATE over the
    engine's challenge, read EF06;
 5. 1101 by card (mdtrt_cert_type 03) with card_no, card_sn, challenge, process factor
    and cryptogram, and the holder's certno and name from EF06: the engine verifies
    the cryptogram and refuses a revoked or (by the issuer's record) expired card;
 6. only then, when a PIN was given: read the try counter (VERIFY without data); at
    `PIN_TRIES_KEPT` tries or fewer refuse `pin_last_try` without sending VERIFY (the
    card stays usable at the counter), else VERIFY;
 7. the person is released. In require-PIN mode that needs step 6 to have passed.
A failure is an `AgentError` naming its source and its stable code; nothing is
retried behind the caller's back (a challenge is single use).

Every engine call of one flow shares one budget (`engine_timeout_s`, or the request's
`deadline_s`), applied with `asyncio.timeout`, minus what the calls before it spent:
a hung engine is answered `engine_timeout` within it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
import msgspec

from card import ecard
from card.reader import Reader
from card.ssse import CardAlgorithm, CardBasics, CardError, CardHolder, CardResult, CardSession
from terminals.agent import limits
from terminals.agent.results import AgentError, AgentResult, ErrorSource
from terminals.client import Client
from terminals.errors import BusinessError, ServiceUnavailable, YikatongError
from terminals.messages.card import challenge as challenge_msg
from terminals.messages.card import person_info as person_info_msg
from terminals.msgid import PLATFORM_TZ

__all__ = ["AgentError", "CardAgent", "CardRead", "EcardIdentified", "ErrorSource", "Identified"]

T = TypeVar("T")


def platform_today() -> dt.date:
    """The calendar day in the platform's time zone (UTC+8), as the issuer counts it."""
    return dt.datetime.now(PLATFORM_TZ).date()


@dataclass(frozen=True)
class CardRead:
    basics: CardBasics
    holder: CardHolder | None  # None when EF06 needs the engine (generation 3) or a PIN
    holder_withheld: bool  # require-PIN mode: EF06 was not read


@dataclass(frozen=True)
class Identified:
    basics: CardBasics
    holder: CardHolder
    person: person_info_msg.Output
    pin_verified: bool
    elapsed_ms: float


@dataclass(frozen=True)
class EcardIdentified:
    person: person_info_msg.Output
    elapsed_ms: float


@dataclass(frozen=True)
class _Challenges:
    basics: CardBasics
    int_process_factor: bytes
    ext_process_factor: bytes | None
    ext_challenge: bytes | None


@dataclass(frozen=True)
class _Answered:
    holder: CardHolder
    cryptogram: bytes


def check_pin(pin: str | None, *, required: bool) -> None:
    """The PIN's form before any work: ASCII digits only (str.isdigit() alone admits
    '١٢٣٤' and '１２３４'), PIN_DIGITS_MIN..MAX of them; present in require-PIN mode."""
    if pin is None:
        if required:
            raise AgentError.of(
                AgentResult.pin_required, "pin: required (this agent runs in require-PIN mode)"
            )
        return
    lo, hi = limits.PIN_DIGITS_MIN, limits.PIN_DIGITS_MAX
    if not (pin.isascii() and pin.isdigit() and lo <= len(pin) <= hi):
        raise AgentError.of(AgentResult.field_invalid, f"pin: {lo} to {hi} ASCII digits 0-9")


def check_deadline(deadline_s: float | None, default_s: float) -> float:
    if deadline_s is None:
        return default_s
    lo, hi = limits.ENGINE_DEADLINE_MIN_S, limits.ENGINE_DEADLINE_MAX_S
    if not lo <= deadline_s <= hi:
        raise AgentError.of(AgentResult.field_invalid, f"deadline_s: {lo:g} to {hi:g} seconds")
    return deadline_s


def check_qr(qr: str) -> ecard.EcardToken:
    try:
        return ecard.decode_ecard_token(qr)
    except ecard.EcardTokenError as exc:
        raise AgentError.of(AgentResult.field_invalid, f"qr: {exc}") from exc


class _EngineBudget:
    """One flow's time for the engine: each call gets what the calls before left."""

    def __init__(self, total_s: float) -> None:
        self.total_s = total_s
        self._left_s = total_s

    async def run(self, call: Callable[[], Awaitable[T]]) -> T:
        if self._left_s <= 0:
            raise AgentError.of(
                AgentResult.engine_timeout, f"the engine budget of {self.total_s:g} s is spent"
            )
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(self._left_s):
                return await call()
        except BusinessError as exc:
            raise AgentError(ErrorSource.engine, int(exc.code), exc.code.name, str(exc)) from exc
        except ServiceUnavailable as exc:
            if isinstance(exc.__cause__, aiohttp.ClientConnectorError):
                raise AgentError.of(AgentResult.engine_unreachable, str(exc)) from exc
            raise AgentError.of(AgentResult.engine_unavailable, str(exc)) from exc
        except TimeoutError as exc:  # before OSError, its base class
            raise AgentError.of(
                AgentResult.engine_timeout, f"the engine did not answer within {self.total_s:g} s"
            ) from exc
        except (YikatongError, aiohttp.ClientError, OSError, msgspec.ValidationError) as exc:
            raise AgentError.of(
                AgentResult.engine_unreachable, f"engine call failed: {type(exc).__name__}"
            ) from exc
        finally:
            self._left_s -= loop.time() - started


class CardAgent:
    """See the module docstring. `require_pin` defaults to False here, for embedders
    that decide per visit (the HIS simulator, the benchmarks); the `yikatong agent`
    service defaults to True (docs/CARD_AGENT.md)."""

    def __init__(
        self,
        reader: Reader,
        client: Client,
        *,
        require_pin: bool = False,
        allow_last_pin_try: bool = False,
        engine_timeout_s: float = limits.ENGINE_TIMEOUT_S,
        queue_wait_s: float = limits.QUEUE_WAIT_S,
        queue_max: int = limits.QUEUE_MAX,
        card_deadline_s: float = limits.CARD_DEADLINE_S,
        card_executor: concurrent.futures.Executor | None = None,
        clock: Callable[[], float] = time.perf_counter,
        today: Callable[[], dt.date] = platform_today,
    ) -> None:
        self.reader = reader
        self.client = client
        self.require_pin = require_pin
        self._tries_kept = 0 if allow_last_pin_try else limits.PIN_TRIES_KEPT
        self.engine_timeout_s = check_deadline(engine_timeout_s, engine_timeout_s)
        self._queue_wait_s = queue_wait_s
        self._queue_max = queue_max
        self._card_deadline_s = card_deadline_s
        self._own_executor = card_executor is None
        self._executor = card_executor or concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"card-{reader.name}"
        )
        self._busy = asyncio.Lock()
        self._waiting = 0
        self._sign_in_lock = asyncio.Lock()
        self._clock = clock
        self._today = today

    @property
    def busy(self) -> bool:
        return self._busy.locked()

    @property
    def queued(self) -> int:
        """Flows waiting for the reader."""
        return self._waiting

    async def close(self) -> None:
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    @contextlib.asynccontextmanager
    async def _reader_turn(self) -> AsyncIterator[None]:
        if self._busy.locked() and self._waiting >= self._queue_max:
            raise AgentError.of(
                AgentResult.agent_busy, f"the reader is busy and {self._waiting} flows wait"
            )
        self._waiting += 1
        try:
            async with asyncio.timeout(self._queue_wait_s):
                await self._busy.acquire()
        except TimeoutError:
            raise AgentError.of(
                AgentResult.agent_busy, f"the reader stayed busy for {self._queue_wait_s:g} s"
            ) from None
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._busy.release()

    async def _on_card(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn)
        except CardError as exc:
            raise AgentError.from_card(exc) from exc

    async def _sign_in_once(self) -> None:
        """The operator's sign-in (9001) opens the terminal's day; once per client."""
        async with self._sign_in_lock:
            if not self.client.sign_no:
                await self.client.sign_in()

    def _session(self) -> CardSession:
        return CardSession(self.reader, deadline_s=self._card_deadline_s)

    async def read_card(self) -> CardRead:
        """EF05, and EF06 where the card allows it without the engine (generation 2)
        and the mode allows it without a PIN (not require-PIN)."""
        withheld = self.require_pin

        def run() -> CardRead:
            session = self._session()
            try:
                basics = session.open()
                readable = basics.generation < 3 and not withheld
                return CardRead(basics, session.read_holder() if readable else None, withheld)
            finally:
                session.close()

        async with self._reader_turn():
            return await self._on_card(run)

    async def person_info(
        self, *, pin: str | None = None, deadline_s: float | None = None
    ) -> Identified:
        """The whole authenticated 1101 by card; see the module docstring."""
        check_pin(pin, required=self.require_pin)
        budget = _EngineBudget(check_deadline(deadline_s, self.engine_timeout_s))
        async with self._reader_turn():
            started = self._clock()
            session = self._session()
            try:
                return await self._identify(session, pin, budget, started)
            finally:
                await self._on_card(session.close)

    async def person_info_by_ecard(
        self, qr: str, *, deadline_s: float | None = None
    ) -> EcardIdentified:
        """1101 by e-card with the agent's terminal key: the kiosk never holds it. No
        reader involved, so no queue behind card flows."""
        token = check_qr(qr)
        budget = _EngineBudget(check_deadline(deadline_s, self.engine_timeout_s))
        started = self._clock()
        await budget.run(self._sign_in_once)
        person = await budget.run(
            lambda: self.client.person_info_by_ecard(token.payload.token_id, qr)
        )
        return EcardIdentified(person, (self._clock() - started) * 1000.0)

    async def _identify(
        self, session: CardSession, pin: str | None, budget: _EngineBudget, started: float
    ) -> Identified:
        await budget.run(self._sign_in_once)
        got = await self._on_card(lambda: self._challenges(session))
        issued = await budget.run(
            lambda: self.client.card_challenge(
                got.basics.card_sn, got.ext_process_factor, got.ext_challenge
            )
        )
        answered = await self._on_card(lambda: self._answer(session, got, issued))
        person = await budget.run(
            lambda: self.client.person_info_by_card(
                got.basics.card_no,
                got.basics.card_sn,
                bytes.fromhex(issued.challenge),
                got.int_process_factor,
                answered.cryptogram,
                certno=answered.holder.certno,
                psn_name=answered.holder.name,
            )
        )
        if pin is not None:  # after 1101: a revoked or expired card costs no try
            await self._on_card(lambda: self._verify_pin(session, pin))
        return Identified(
            got.basics,
            answered.holder,
            person,
            pin is not None,
            (self._clock() - started) * 1000.0,
        )

    def _challenges(self, session: CardSession) -> _Challenges:
        basics = session.open()
        if basics.expiry_date < self._today():
            raise CardError(CardResult.card_expired, "the card's EF05 expiry date has passed")
        int_pf = session.get_challenge()
        if basics.algorithm is CardAlgorithm.SM4 or basics.generation >= 3:
            ext_pf = session.get_challenge()
            return _Challenges(basics, int_pf, ext_pf, session.get_challenge())
        return _Challenges(basics, int_pf, None, None)

    @staticmethod
    def _answer(session: CardSession, got: _Challenges, issued: challenge_msg.Output) -> _Answered:
        if got.ext_process_factor is not None:
            if not issued.ext_cryptogram:
                raise AgentError.of(
                    AgentResult.ext_cryptogram_missing,
                    "the engine gave no external-authentication cryptogram",
                )
            session.external_authenticate(
                got.ext_process_factor, bytes.fromhex(issued.ext_cryptogram)
            )
        cryptogram = session.internal_authenticate(
            got.int_process_factor, bytes.fromhex(issued.challenge)
        )
        return _Answered(session.read_holder(), cryptogram)

    def _verify_pin(self, session: CardSession, pin: str) -> None:
        left = session.pin_tries_left()
        if left == 0:
            raise CardError(CardResult.pin_locked, "the PIN is blocked", tries_left=0)
        if left <= self._tries_kept:
            raise AgentError.of(
                AgentResult.pin_last_try,
                f"{left} PIN try left: kept for the counter, VERIFY not sent",
                tries_left=left,
            )
        session.verify_pin(pin)
