"""CPU and memory sampling around a measured run (loadtest.procstat reads /proc,
loadtest.proclookup finds the processes):
the engine's processes, PostgreSQL (the postmaster and its backends) and the load
generator itself (this process and its worker processes), sampled once a second."""

from __future__ import annotations

import asyncio
import contextlib
import os
import urllib.parse
from dataclasses import dataclass

from loadtest import proclookup, procstat

SAMPLE_EVERY_S = 1.0
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def engine_pids(url: str) -> list[int]:
    """The processes listening on the engine's port, when the engine runs here."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname not in LOCAL_HOSTS or parts.port is None:
        return []
    return proclookup.pids_listening_on(parts.port)


@dataclass
class Sampling:
    sampler: procstat.Sampler
    task: asyncio.Task[None]


async def _every_second(sampler: procstat.Sampler) -> None:
    while True:
        await asyncio.sleep(SAMPLE_EVERY_S)
        await asyncio.to_thread(sampler.sample)


async def start(engine: list[int], dsn: str) -> Sampling:
    groups: dict[str, list[int]] = {"engine": engine, "generator": [os.getpid()]}
    postmaster = None
    if dsn:
        with contextlib.suppress(proclookup.PostmasterLookupError):
            postmaster = await proclookup.postmaster_pid(dsn)
    groups["postgres"] = [postmaster] if postmaster is not None else []
    sampler = procstat.Sampler(groups)
    sampler.start()
    return Sampling(sampler, asyncio.create_task(_every_second(sampler)))


async def stop(s: Sampling) -> procstat.CpuReport:
    s.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await s.task
    return s.sampler.stop()
