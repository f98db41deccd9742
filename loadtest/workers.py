"""Running the generator as one or several processes.

With one worker the driver runs in this process's event loop. With more, each worker
is a spawned process with its own uvloop, a share of the rate (or of the concurrent
users) and a disjoint slice of the terminals, so msgids never collide; they report a
snapshot every second (counts and the latencies of that second, for the live line) and
their whole recorder at the end, which is merged into one. All use the machine's
monotonic clock, so the run's `t0` means the same instant in every process.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue as queue_mod
import time
from multiprocessing.queues import Queue

import msgspec
import uvloop

from loadtest.driver import WorkerSpec, drive
from loadtest.progress import ProgressLine
from loadtest.recorder import Recorder, WireRecorder

START_GRACE_S = 60.0  # spawn + imports + sign-in of every worker
FINISH_GRACE_S = 120.0


class Snapshot(msgspec.Struct, frozen=True, tag=True):
    worker: int
    due: int
    answered: int
    errors: int
    units: int
    in_flight: int
    window: str


class Finished(msgspec.Struct, frozen=True, tag=True):
    worker: int
    recorder: WireRecorder | None
    error: str = ""


Message = Snapshot | Finished
_encode = msgspec.msgpack.Encoder().encode
_decode_message = msgspec.msgpack.Decoder(Message).decode


def _snapshot(worker: int, r: Recorder) -> Snapshot:
    return Snapshot(
        worker,
        r.due_total(),
        r.answered(),
        r.errors(),
        r.completed,
        r.in_flight,
        r.take_window().encode().decode(),
    )


def _worker_main(spec_bytes: bytes, out: Queue[bytes]) -> None:
    spec = msgspec.msgpack.decode(spec_bytes, type=WorkerSpec)
    try:
        recorder = uvloop.run(
            drive(spec, progress=lambda r: out.put(_encode(_snapshot(spec.worker, r))))
        )
        out.put(_encode(Finished(spec.worker, recorder.to_wire())))
    except BaseException as exc:
        out.put(_encode(Finished(spec.worker, None, f"{type(exc).__name__}: {exc}")))
        raise


class WorkerFailed(Exception):
    """A generator process died or reported an error."""


async def run(specs: list[WorkerSpec], line: ProgressLine) -> Recorder:
    t0 = specs[0].t0
    if len(specs) == 1:

        def show(r: Recorder) -> None:
            line.update(
                time.monotonic() - t0,
                r.due_total(),
                r.answered(),
                r.errors(),
                r.completed,
                r.take_window(),
                r.in_flight,
            )

        recorder = await drive(specs[0], progress=show)
        line.done()
        return recorder
    return await _run_processes(specs, line)


async def _run_processes(specs: list[WorkerSpec], line: ProgressLine) -> Recorder:
    ctx = multiprocessing.get_context("spawn")
    out: Queue[bytes] = ctx.Queue(maxsize=10_000)
    procs = [
        ctx.Process(
            target=_worker_main, args=(_encode(s), out), name=f"loadtest-{s.worker}", daemon=True
        )
        for s in specs
    ]
    for p in procs:
        p.start()
    t0 = specs[0].t0
    deadline = t0 + specs[0].duration_s + START_GRACE_S + FINISH_GRACE_S
    merged = Recorder(t0)
    latest: dict[int, Snapshot] = {}
    finished: set[int] = set()
    loop = asyncio.get_running_loop()
    try:
        while len(finished) < len(specs):
            if time.monotonic() > deadline:
                raise WorkerFailed("generator processes did not finish in time")
            try:
                raw = await loop.run_in_executor(None, out.get, True, 1.0)
            except queue_mod.Empty:
                dead = [p.name for p in procs if not p.is_alive() and p.exitcode not in (0, None)]
                if dead:
                    raise WorkerFailed(f"generator process died: {', '.join(dead)}") from None
                continue
            msg = _decode_message(raw)
            if isinstance(msg, Finished):
                if msg.recorder is None:
                    raise WorkerFailed(f"generator process {msg.worker}: {msg.error}")
                merged.merge_wire(msg.recorder)
                finished.add(msg.worker)
                continue
            latest[msg.worker] = msg
            from hdrh.histogram import HdrHistogram

            window = HdrHistogram.decode(msg.window)
            line.update(
                time.monotonic() - t0,
                sum(s.due for s in latest.values()),
                sum(s.answered for s in latest.values()),
                sum(s.errors for s in latest.values()),
                sum(s.units for s in latest.values()),
                window,
                sum(s.in_flight for s in latest.values()),
            )
    finally:
        line.done()
        for p in procs:
            p.join(timeout=5.0)
            if p.is_alive():
                p.kill()
                p.join()
    return merged
