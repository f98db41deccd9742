"""Is the engine there? `EngineProbe` asks the engine's `/readyz` (database and HSM
answer) with a short timeout and caches the answer for a few seconds, so that a kiosk
polling `/v1/status` every second costs the engine one probe per PROBE_CACHE_S.

`reachable`: the engine answered HTTP at all; `ready`: it answered 200. Concurrent
status requests share one probe in flight. The probe carries no credentials and sends
nothing about the card or the person.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
import msgspec

from terminals.agent import limits


class EngineHealth(msgspec.Struct, frozen=True, kw_only=True):
    reachable: bool
    ready: bool
    latency_ms: float | None  # None when nothing answered
    error: str | None  # why not ready: "readyz answered 503", "timeout after 1 s", ...
    age_s: float = 0.0  # how old the cached answer is


class EngineProbe:
    def __init__(
        self,
        engine_url: str,
        *,
        timeout_s: float = limits.PROBE_TIMEOUT_S,
        cache_s: float = limits.PROBE_CACHE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = engine_url.rstrip("/") + "/readyz"
        self._timeout_s = timeout_s
        self._cache_s = cache_s
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._last: tuple[float, EngineHealth] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def health(self) -> EngineHealth:
        async with self._lock:  # one probe in flight; the others wait for its answer
            now = self._clock()
            if self._last is None or now - self._last[0] >= self._cache_s:
                self._last = (now, await self._probe())
            at, health = self._last
            return msgspec.structs.replace(health, age_s=round(self._clock() - at, 3))

    async def _probe(self) -> EngineHealth:
        if self._session is None:
            raise RuntimeError("EngineProbe used before start()")
        started = self._clock()
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._session.get(self._url) as resp:
                    await resp.read()
                    status = resp.status
        except TimeoutError:
            return EngineHealth(
                reachable=False,
                ready=False,
                latency_ms=None,
                error=f"timeout after {self._timeout_s:g} s",
            )
        except (aiohttp.ClientError, OSError) as exc:
            return EngineHealth(
                reachable=False, ready=False, latency_ms=None, error=type(exc).__name__
            )
        latency_ms = round((self._clock() - started) * 1000.0, 1)
        ready = status == 200
        return EngineHealth(
            reachable=True,
            ready=ready,
            latency_ms=latency_ms,
            error=None if ready else f"readyz answered {status}",
        )
