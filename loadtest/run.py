"""`yikatong loadtest`: from the command's options to the report.

1. The engine: with `--url` the one already running (and `--database-url` its
   database); otherwise a new one on a fresh embedded database in `OUT/engine`,
   seeded with `--persons`, exactly as a newcomer would start it, and stopped after.
2. `--baseline`: pgbench TPC-B on the same server first, in a database of its own.
3. The world (terminals, keys, catalog, persons) and a warm-up.
4. The measured load — open loop at `--rate`, closed loop with `--concurrency`, or
   `--find-max` steps — with the CPU of engine, PostgreSQL and generator sampled.
5. The engine's round trips per transaction code from its /metrics, then the report.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from loadtest import baseline as pgbench
from loadtest import cpu as cpu_sampling
from loadtest import metrics_delta, profile
from loadtest.driver import WorkerSpec
from loadtest.progress import ProgressLine
from loadtest.recorder import Recorder, summarize
from loadtest.report import Report, Step, latency_parts, outcomes, throughput, timeline, write
from loadtest.scenarios import SCENARIOS
from loadtest.target import Target, own_engine, running_engine
from loadtest.world import World

START_DELAY_S = 1.0  # workers sign in before the shared t0
SPAWN_START_DELAY_S = 8.0  # spawned workers import and sign in first
SEED_OPTION = {"hospital": "--hospitals", "pharmacy": "--pharmacies"}


def _specs(
    args: argparse.Namespace,
    world: World,
    *,
    mode: str,
    rate: float,
    concurrency: int,
    duration_s: float,
    run_token: str,
    url: str,
) -> list[WorkerSpec]:
    n = _processes(args, world)
    delay = START_DELAY_S if n == 1 else SPAWN_START_DELAY_S
    t0 = time.monotonic() + delay
    specs = []
    for k in range(n):
        users = concurrency // n + (1 if k < concurrency % n else 0)
        specs.append(
            WorkerSpec(
                url=url,
                worker=k,
                run_token=run_token,
                mode="open" if mode == "open" else "closed",
                mix=args.mix,
                rate_per_s=rate / n,
                concurrency=max(users, 1),
                duration_s=duration_s,
                t0=t0,
                seed=args.seed,
                arrivals=args.arrivals,
                terminals=world.terminals[k::n],
                pharmacies=world.pharmacies[k::n],
                persons=world.persons,
                catalog=world.catalog,
                timeout_s=args.timeout,
                max_in_flight=max(1, args.max_in_flight // n),
                connections=max(1, args.connections // n),
            )
        )
    return specs


def _kinds(args: argparse.Namespace) -> list[str]:
    """The kinds of institution whose terminals the mix sends from."""
    return sorted({SCENARIOS[name].inst_type for name, _ in args.mix})


def _processes(args: argparse.Namespace, world: World) -> int:
    """Generator processes: each needs terminals of its own of every kind the mix
    sends from (msgids are drawn per institution and process)."""
    counts: list[int] = [args.workers]
    for kind in _kinds(args):
        terminals = world.of_kind(kind)
        if not terminals:
            raise SystemExit(
                f"yikatong loadtest: the mix sends from {kind} terminals and the deployment"
                f" has none (seed some: yikatong seed {SEED_OPTION[kind]} N)"
            )
        counts.append(len(terminals))
    return max(1, min(counts))


def _run_token() -> str:
    """A short token that keeps this run's outpatient numbers apart from earlier runs'."""
    n = int(time.time() * 10) % 36**6
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = ""
    for _ in range(6):
        n, d = divmod(n, 36)
        out = digits[d] + out
    return out


async def _load(
    args: argparse.Namespace,
    world: World,
    target: Target,
    *,
    mode: str,
    rate: float,
    duration_s: float,
    label: str,
) -> Recorder:
    from loadtest import workers

    specs = _specs(
        args,
        world,
        mode=mode,
        rate=rate,
        concurrency=args.concurrency,
        duration_s=duration_s,
        run_token=_run_token(),
        url=target.url,
    )
    return await workers.run(specs, ProgressLine(label, duration_s))


def _machine() -> dict[str, Any]:
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "host": platform.node(),
    }


def _settings(args: argparse.Namespace, mode: str, world: World, target: Target) -> dict[str, Any]:
    return {
        "url": target.url,
        "engine": "started by the load tester" if not args.url else "already running",
        "mode": mode,
        "mix": ",".join(f"{n}={w}" for n, w in args.mix),
        "rate_per_s": args.rate if mode == "open" else None,
        "concurrency": args.concurrency if mode == "closed" else None,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "arrivals": args.arrivals,
        "terminals": sum(len(world.of_kind(k)) for k in _kinds(args)),
        "terminals_of": ", ".join(_kinds(args)),
        "generator_processes": _processes(args, world),
        "persons_sampled": len(world.persons),
        "timeout_s": args.timeout,
        "seed": args.seed,
        "engine_pool_size": target.pool_size,
    }


async def measure(args: argparse.Namespace, target: Target, world: World) -> Report:
    mode = "find-max" if args.find_max else ("open" if args.rate is not None else args.mode)
    if mode == "closed" and args.rate is not None:
        raise SystemExit("yikatong loadtest: --rate is for the open loop; drop --mode closed")
    base_pgbench = None
    if args.baseline:
        if not target.dsn:
            raise SystemExit("yikatong loadtest: --baseline needs --database-url with --url")
        clients = args.pgbench_clients or target.pool_size or args.concurrency
        print(f"baseline: pgbench TPC-B -s 10, {clients} clients, {args.pgbench_duration}s ...")
        base_pgbench = await pgbench.run_baseline(
            target.dsn, clients=clients, duration_s=args.pgbench_duration
        )
        print(f"baseline: pgbench {base_pgbench.result.tps:.0f} TPS")
    if args.warmup > 0:
        warm_rate = args.rate if args.rate is not None else 50.0
        await _load(
            args,
            world,
            target,
            mode="closed" if mode == "closed" else "open",
            rate=warm_rate,
            duration_s=args.warmup,
            label="warm-up",
        )
    before = await metrics_delta.scrape(target.url)
    sampler = await cpu_sampling.start(target.engine_pids, target.dsn)
    profiling = None
    if args.profile and target.engine_pids:
        window_s = args.duration if mode != "find-max" else args.step_duration
        profiling = asyncio.create_task(
            profile.record(target.engine_pids[0], window_s, Path(args.out) / "engine-profile.txt")
        )
    steps: list[Step] | None = None
    held: float | None = None
    offered: float | None
    if mode == "find-max":
        rec, steps, held, offered = await find_max(args, world, target)
    else:
        rate = args.rate if mode == "open" else 0.0
        rec = await _load(
            args, world, target, mode=mode, rate=rate, duration_s=args.duration, label=mode
        )
        offered = args.rate if mode == "open" else None
    measured_s = args.step_duration if mode == "find-max" else args.duration
    cpu = await cpu_sampling.stop(sampler)
    engine_profile = await profiling if profiling is not None else None
    after = await metrics_delta.scrape(target.url)
    names = [n for n, _ in args.mix]
    unit = SCENARIOS[names[0]].unit if len(names) == 1 else "unit"
    settling = {n for n in names if SCENARIOS[n].settles}
    tp = throughput(rec, measured_s, offered, unit, settling)
    total, by_infno = latency_parts(rec)
    ratio = None
    if base_pgbench is not None and base_pgbench.result.tps > 0:
        ratio = round(tp.settlements_per_s / base_pgbench.result.tps, 4)
    return Report(
        command="yikatong loadtest " + " ".join(sys.argv[2:]),
        started_at=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        machine=_machine(),
        settings=_settings(args, mode, world, target),
        population=world.population,
        throughput=tp,
        latency=total,
        latency_by_infno=by_infno,
        send_lag=summarize(rec.send_lag),
        outcomes=outcomes(rec),
        errors=rec.errors(),
        timeline=timeline(rec),
        cpu=cpu,
        db_round_trips=metrics_delta.round_trips(before, after),
        baseline=_baseline_summary(base_pgbench) if base_pgbench is not None else None,
        ratio=ratio,
        steps=steps,
        max_rate_held_per_s=held,
        profile=engine_profile,
    )


async def find_max(
    args: argparse.Namespace, world: World, target: Target
) -> tuple[Recorder, list[Step], float | None, float]:
    """Step the rate up by `--step-factor` until p99 passes `--slo-ms` or errors
    appear; the result is the last step that held (or the first, if none did)."""
    rate = args.rate or args.start_rate
    steps: list[Step] = []
    best: tuple[Recorder, float] | None = None
    first: tuple[Recorder, float] | None = None
    while rate <= args.max_rate:
        rec = await _load(
            args,
            world,
            target,
            mode="open",
            rate=rate,
            duration_s=args.step_duration,
            label=f"{rate:.0f}/s",
        )
        p99 = summarize(rec.total).p99_ms
        errors = rec.errors()
        why = ""
        if errors:
            why = f"{errors} errors"
        elif p99 > args.slo_ms:
            why = f"p99 {p99:.1f} ms > {args.slo_ms:g} ms"
        steps.append(
            Step(rate, round(rec.completed / args.step_duration, 2), p99, errors, not why, why)
        )
        first = first or (rec, rate)
        if why:
            break
        best = (rec, rate)
        rate *= args.step_factor
    chosen = best or first
    if chosen is None:
        raise SystemExit("yikatong loadtest: --find-max ran no step (--max-rate below the start)")
    return chosen[0], steps, best[1] if best else None, chosen[1]


def _baseline_summary(b: pgbench.BaselineRun) -> dict[str, Any]:
    r = b.result
    return {
        "tps": r.tps,
        "latency_ms_avg": r.latency_ms_avg,
        "latency_ms_stddev": r.latency_ms_stddev,
        "clients": r.clients,
        "threads": r.threads,
        "duration_s": r.duration_s,
        "scaling_factor": r.scaling_factor,
        "query_mode": r.query_mode,
        "transactions": r.transactions,
        "transactions_failed": r.transactions_failed,
        "pgbench": r.version_line,
        "command": " ".join(b.run_argv),
    }


def print_summary(r: Report, paths: list[Path]) -> None:
    t = r.throughput
    print(
        f"{t.units_per_s:.1f} {t.unit}s/s ({t.settlements_per_s:.1f} settlements/s),"
        f" {t.answered_per_s:.1f} answers/s, {r.errors} errors over {t.measured_s:.0f}s"
    )
    lat = r.latency
    print(
        f"latency ms: p50 {lat.p50_ms:.2f}  p90 {lat.p90_ms:.2f}  p99 {lat.p99_ms:.2f}"
        f"  p99.9 {lat.p999_ms:.2f}  max {lat.max_ms:.2f}"
    )
    for infno, s in r.latency_by_infno.items():
        print(f"  {infno}: n {s.count}  p50 {s.p50_ms:.2f}  p99 {s.p99_ms:.2f}  max {s.max_ms:.2f}")
    if r.max_rate_held_per_s is not None:
        print(f"find-max: highest rate that held {r.max_rate_held_per_s:.1f}/s")
    if r.ratio is not None and r.baseline is not None:
        print(
            f"ratio {r.ratio:.3f} = {t.settlements_per_s:.1f} settlements/s ÷"
            f" {r.baseline['tps']:.0f} pgbench TPS"
        )
    print("report: " + ", ".join(str(p) for p in paths))


async def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    ctx = running_engine(args) if args.url else own_engine(args, out / "engine")
    async with ctx as (target, world):
        report = await measure(args, target, world)
    paths = write(report, out)
    print_summary(report, paths)
    return 0
