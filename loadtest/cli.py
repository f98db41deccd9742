"""`yikatong loadtest`, contributed to the engine's CLI through the `yikatong.commands`
entry point (the engine never imports the load tester).

    yikatong loadtest --baseline --duration 60 --out var/loadtest
    yikatong loadtest --baseline --scenario pharmacy      # 2102, a 5-item basket each
    yikatong loadtest --rate 200 --duration 30            # open loop at 200 arrivals/s
    yikatong loadtest --mode closed --concurrency 32      # closed loop: capacity
    yikatong loadtest --find-max --slo-ms 25              # highest rate within the SLO
    yikatong loadtest --url http://127.0.0.1:8080 --database-url postgresql://...

Without `--rate` the load is closed-loop (capacity); with it, open-loop. Exit status
0 when the run completed (errors by the engine are reported, not fatal), 2 for bad
options.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from loadtest.scenarios import SCENARIOS, parse_mix

DEFAULT_SEED = 20261129


def _positive(kind: type[int] | type[float]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError("must be greater than 0")
        return value

    return parse


def _mix(text: str) -> list[tuple[str, int]]:
    try:
        return parse_mix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    what = p.add_argument_group("what to send")
    what.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default="outpatient",
        help="one scenario (default outpatient: 2201 → 2204 → 2207 per settlement)",
    )
    what.add_argument(
        "--mix", type=_mix, help="weighted scenarios, e.g. outpatient=8,person-info=2"
    )
    what.add_argument(
        "--terminals",
        type=_positive(int),
        default=20,
        help="terminals of each kind the mix sends from (hospitals; pharmacies for 2102)",
    )
    what.add_argument("--seed", type=int, default=DEFAULT_SEED, help="population and run seed")
    how = p.add_argument_group("how")
    how.add_argument("--rate", type=_positive(float), help="arrivals per second (open loop)")
    how.add_argument("--mode", choices=("open", "closed"), default="closed")
    how.add_argument("--concurrency", type=_positive(int), default=32, help="closed-loop users")
    how.add_argument("--duration", type=_positive(float), default=30.0, help="seconds measured")
    how.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured load first")
    how.add_argument("--arrivals", choices=("poisson", "uniform"), default="poisson")
    how.add_argument("--workers", type=_positive(int), default=1, help="generator processes")
    how.add_argument("--timeout", type=_positive(float), default=10.0, help="per request, s")
    how.add_argument("--max-in-flight", type=_positive(int), default=10_000)
    how.add_argument("--connections", type=_positive(int), default=512, help="HTTP connections")
    fm = p.add_argument_group("find the highest rate within the SLO")
    fm.add_argument("--find-max", action="store_true")
    fm.add_argument("--slo-ms", type=_positive(float), default=25.0, help="p99 limit")
    fm.add_argument("--start-rate", type=_positive(float), default=50.0)
    fm.add_argument("--step-factor", type=float, default=1.25)
    fm.add_argument("--step-duration", type=_positive(float), default=10.0)
    fm.add_argument("--max-rate", type=_positive(float), default=100_000.0)
    eng = p.add_argument_group("the engine")
    eng.add_argument("--url", help="an engine already running (default: start one here)")
    eng.add_argument("--database-url", help="its database (for --baseline, CPU and persons)")
    eng.add_argument(
        "--persons", type=_positive(int), default=10_000, help="insured persons to seed"
    )
    eng.add_argument("--sample-persons", type=_positive(int), default=100_000)
    eng.add_argument("--hospitals", type=_positive(int), default=20, help="of the seed (--url)")
    eng.add_argument("--engine-pool", type=_positive(int), default=20, help="its DB pool size")
    base = p.add_argument_group("the pgbench yardstick")
    base.add_argument("--baseline", action="store_true", help="pgbench TPC-B first, then ratio")
    base.add_argument("--pgbench-clients", type=_positive(int), help="default: engine pool size")
    base.add_argument("--pgbench-duration", type=_positive(int), default=30)
    p.add_argument(
        "--profile", action="store_true", help="sample the engine with py-spy while measuring"
    )
    p.add_argument("--out", default="var/loadtest", help="report directory")


def add_loadtest(
    commands: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
) -> None:
    parser = commands.add_parser(
        "loadtest",
        help="open-loop load generator with a pgbench yardstick",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(plugin_main=_main, plugin_needs_database=False)


async def _main(args: argparse.Namespace, dsn: str) -> None:
    from loadtest.run import main

    if args.mix is None:
        args.mix = [(args.scenario, 1)]
    if args.step_factor <= 1.0:
        raise SystemExit("yikatong loadtest: --step-factor must be above 1")
    if args.find_max and args.mode == "closed" and args.rate is None:
        args.mode = "open"
    code = await main(args)
    if code:
        raise SystemExit(code)
