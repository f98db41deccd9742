"""`CardAgent`: one reader, one engine client, the card-authentication flow.

Card I/O is blocking (PC/SC), so every card step runs on the agent's own single
thread (`card_executor`); the engine calls run on the event loop. One flow at a time
per reader (`_busy` lock): a card is a single-threaded device and two interleaved
sessions would break each other's challenges.

The flow (DOMAIN.md §3.3, DESIGN.md §4):
 1. power on, SELECT SSSE, read EF05 (card_sn, version → generation and algorithm);
 2. GET CHALLENGE → process factor for INTERNAL AUTHENTICATE; generation 3 also GET
    CHALLENGE ×2 → process factor and challenge for EXTERNAL AUTHENTICATE (the card
    keeps only its last challenge, so that one comes last);
 3. 9301 → the engine's challenge (single use, 60 s, bound to this terminal and card)
    and, for generation 3, the external-authentication cryptogram from its HSM;
 4. EXTERNAL AUTHENTICATE (generation 3: unlocks EF06), INTERNAL AUTHENTICATE over the
    engine's challenge, read EF06, VERIFY PIN when the caller supplied one;
 5. 1101 by card (mdtrt_cert_type 03) with card_no, card_sn, challenge, process factor
    and cryptogram, and the holder's certno and name from EF06 for the engine to match.
A failure is an `AgentError` naming its source (reader/card, engine) and its stable
code; nothing is retried behind the caller's back (a challenge is single use).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from card.reader import Reader
from card.ssse import CardAlgorithm, CardBasics, CardError, CardHolder, CardSession
from terminals.client import Client
from terminals.errors import BusinessError, ServiceUnavailable, YikatongError
from terminals.messages.card import person_info as person_info_msg

T = TypeVar("T")


class ErrorSource(enum.StrEnum):
    card = "card"  # the card or the reader (CardResult codes, terminal-standard numbers)
    engine = "engine"  # the engine refused (ResultCode numbers)
    service = "service"  # the engine could not be reached or answered 503


class AgentError(Exception):
    def __init__(self, source: ErrorSource, code: int, result: str, message: str) -> None:
        super().__init__(message)
        self.source = source
        self.code = code
        self.result = result
        self.message = message


@dataclass(frozen=True)
class CardRead:
    basics: CardBasics
    holder: CardHolder | None  # None when EF06 needs the engine (generation 3)


@dataclass(frozen=True)
class Identified:
    basics: CardBasics
    holder: CardHolder
    person: person_info_msg.Output
    pin_verified: bool
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


def _card_error(exc: CardError) -> AgentError:
    return AgentError(ErrorSource.card, int(exc.result), exc.result.name, str(exc))


class CardAgent:
    def __init__(
        self,
        reader: Reader,
        client: Client,
        *,
        card_deadline_s: float = 2.0,
        card_executor: concurrent.futures.Executor | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.reader = reader
        self.client = client
        self._card_deadline_s = card_deadline_s
        self._own_executor = card_executor is None
        self._executor = card_executor or concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"card-{reader.name}"
        )
        self._busy = asyncio.Lock()
        self._clock = clock

    @property
    def busy(self) -> bool:
        return self._busy.locked()

    async def close(self) -> None:
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _on_card(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn)
        except CardError as exc:
            raise _card_error(exc) from exc

    async def _engine(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except BusinessError as exc:
            raise AgentError(ErrorSource.engine, int(exc.code), exc.code.name, str(exc)) from exc
        except ServiceUnavailable as exc:
            raise AgentError(ErrorSource.service, 503, "engine_unavailable", str(exc)) from exc
        except (TimeoutError, YikatongError, OSError) as exc:
            raise AgentError(
                ErrorSource.service, 0, "engine_unreachable", f"engine call failed: {exc!r}"
            ) from exc

    def _session(self) -> CardSession:
        return CardSession(self.reader, deadline_s=self._card_deadline_s)

    async def read_card(self) -> CardRead:
        """EF05 (and EF06 where the card allows it without the engine: generation 2)."""

        def run() -> CardRead:
            session = self._session()
            try:
                basics = session.open()
                holder = session.read_holder() if basics.generation < 3 else None
                return CardRead(basics, holder)
            finally:
                session.close()

        async with self._busy:
            return await self._on_card(run)

    async def person_info(self, *, pin: str | None = None) -> Identified:
        """The whole authenticated 1101 by card; see the module docstring."""
        async with self._busy:
            started = self._clock()
            session = self._session()
            try:
                return await self._identify(session, pin, started)
            finally:
                await self._on_card(session.close)

    async def _identify(self, session: CardSession, pin: str | None, started: float) -> Identified:
        if not self.client.sign_no:  # the operator's sign-in (9001) opens the terminal's day
            await self._engine(self.client.sign_in())

        def challenges() -> _Challenges:
            basics = session.open()
            int_pf = session.get_challenge()
            if basics.algorithm is CardAlgorithm.SM4 or basics.generation >= 3:
                ext_pf = session.get_challenge()
                return _Challenges(basics, int_pf, ext_pf, session.get_challenge())
            return _Challenges(basics, int_pf, None, None)

        got = await self._on_card(challenges)
        issued = await self._engine(
            self.client.card_challenge(
                got.basics.card_sn, got.ext_process_factor, got.ext_challenge
            )
        )
        challenge = bytes.fromhex(issued.challenge)

        def answer() -> _Answered:
            if got.ext_process_factor is not None:
                if not issued.ext_cryptogram:
                    raise AgentError(
                        ErrorSource.engine,
                        0,
                        "ext_cryptogram_missing",
                        "the engine gave no external-authentication cryptogram",
                    )
                session.external_authenticate(
                    got.ext_process_factor, bytes.fromhex(issued.ext_cryptogram)
                )
            cryptogram = session.internal_authenticate(got.int_process_factor, challenge)
            holder = session.read_holder()
            if pin is not None:
                session.verify_pin(pin)
            return _Answered(holder, cryptogram)

        answered = await self._on_card(answer)
        person = await self._engine(
            self.client.person_info_by_card(
                got.basics.card_no,
                got.basics.card_sn,
                challenge,
                got.int_process_factor,
                answered.cryptogram,
                certno=answered.holder.certno,
                psn_name=answered.holder.name,
            )
        )
        return Identified(
            got.basics,
            answered.holder,
            person,
            pin is not None,
            (self._clock() - started) * 1000.0,
        )
