"""`yikatong seed` and `yikatong sim ...`, contributed to the engine's CLI through the
`yikatong.commands` entry points (the engine never imports simulators)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from simulators.population import stream
from simulators.population_load import CHUNK_PERSONS, load_stream

DEFAULT_SEED = 20261129
SEED_PROGRESS_INTERVAL_S = 10.0  # a seed that takes longer says how far it is
SEED_TIMEOUT_S = 3600.0  # per statement: a chunk's COPY, the final balance check


def add_seed(
    commands: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
) -> None:
    parser = with_config(
        commands.add_parser(
            "seed",
            help="load a seeded synthetic population (simulators)",
            description="Generate persons, institutions, terminals, operators and a catalog"
            " from a seed and load them into an empty, migrated database.",
        )
    )
    parser.add_argument("--persons", type=int, default=10_000, help="number of insured persons")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    parser.add_argument("--hospitals", type=int, default=20)
    parser.add_argument("--pharmacies", type=int, default=10)
    parser.add_argument(
        "--chunk-persons",
        type=int,
        default=CHUNK_PERSONS,
        help="persons generated and written per round of COPYs (memory grows with it)",
    )
    parser.set_defaults(plugin_main=_seed)


class SeedProgress:
    """Progress lines on stderr for a long seed, at most one per interval."""

    def __init__(
        self, total: int, interval_s: float, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.total = total
        self.interval_s = interval_s
        self.clock = clock
        self.started = clock()
        self._last = self.started

    def __call__(self, done: int) -> None:
        now = self.clock()
        elapsed_s = now - self.started
        if done == self.total and elapsed_s >= self.interval_s:
            # What follows (the checks made once, then commit) takes a while too.
            self._print(
                f"seed: {done:,} persons written in {elapsed_s:.0f}s;"
                " checking constraints and balances, then committing"
            )
        elif now - self._last >= self.interval_s:
            self._last = now
            rate = done / elapsed_s
            left_s = (self.total - done) / rate
            self._print(
                f"seed: {done:,} of {self.total:,} persons ({100 * done // self.total}%),"
                f" {rate:,.0f} persons/s, about {left_s:.0f}s to go"
            )

    @staticmethod
    def _print(line: str) -> None:
        print(line, file=sys.stderr, flush=True)


async def _seed(args: argparse.Namespace, dsn: str) -> None:
    if args.persons < 1:
        raise SystemExit("yikatong seed: --persons must be at least 1")
    if args.chunk_persons < 1:
        raise SystemExit("yikatong seed: --chunk-persons must be at least 1")
    started = time.perf_counter()
    pop = stream(args.seed, args.persons, hospitals=args.hospitals, pharmacies=args.pharmacies)
    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        if await conn.fetchval("SELECT to_regclass('persons') IS NULL", timeout=30):
            raise SystemExit(
                "yikatong seed: the database is not migrated; run `yikatong db migrate`"
            )
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM persons)", timeout=30):
            raise SystemExit("yikatong seed: the database already holds persons; seed an empty one")
        written = await load_stream(
            conn,
            pop.institutions,
            pop.catalog,
            pop.persons,
            chunk_persons=args.chunk_persons,
            progress=SeedProgress(args.persons, SEED_PROGRESS_INTERVAL_S),
            timeout_s=SEED_TIMEOUT_S,
        )
    finally:
        await conn.close()
    elapsed_s = time.perf_counter() - started
    print(
        f"seeded {written} persons, {len(pop.institutions)} institutions,"
        f" {len(pop.catalog)} catalog items (seed {args.seed}) in {elapsed_s:.1f}s"
    )


def add_sim(
    commands: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
) -> None:
    sim = commands.add_parser("sim", help="hardware and partner simulators")
    sims = sim.add_subparsers(dest="sim_command", required=True, metavar="SIMULATOR")
    his = with_config(
        sims.add_parser("his", help="drive outpatient visits against a running engine")
    )
    his.add_argument("--url", required=True, help="engine base URL, e.g. http://127.0.0.1:8080")
    his.add_argument("--visits", type=int, default=1000)
    his.add_argument("--concurrency", type=int, default=16)
    his.add_argument("--seed", type=int, default=DEFAULT_SEED, help="the population's seed")
    his.add_argument("--persons", type=int, default=10_000, help="the population's size")
    his.set_defaults(plugin_main=_his, plugin_needs_database=False)
    pos = with_config(
        sims.add_parser(
            "pos",
            help="sell pharmacy baskets (2101 → 2102, some 2103) against a running engine",
            description="Pharmacy tills of the seeded population sell baskets of 1-6"
            " catalog items to patients identified by card, e-card or ID number; a share"
            " of the 2102 answers can be lost on purpose and is reversed with 2601.",
        )
    )
    pos.add_argument("--url", required=True, help="engine base URL, e.g. http://127.0.0.1:8080")
    pos.add_argument("--purchases", type=int, default=500)
    pos.add_argument("--concurrency", type=int, default=8)
    pos.add_argument("--seed", type=int, default=DEFAULT_SEED, help="the population's seed")
    pos.add_argument("--persons", type=int, default=10_000, help="the population's size")
    pos.add_argument(
        "--lost-answer-share",
        type=float,
        default=0.0,
        help="share of 2102s whose request or answer the simulated network loses (0-1)",
    )
    pos.set_defaults(plugin_main=_pos, plugin_needs_database=False)
    from simulators import hsm_server

    hsm = with_config(
        sims.add_parser(
            "hsm",
            help="serve the remote HSM protocol (payShield style) with the soft backend",
            description="An HSM service for the engine's remote backend: TCP on 127.0.0.1,"
            " keys from the soft key file, optional injected latency and failures.",
        )
    )
    hsm_server.add_arguments(hsm)
    hsm.set_defaults(plugin_main=_hsm, plugin_needs_database=False)
    from simulators.card_commands import add_card_commands

    add_card_commands(sims)


async def _his(args: argparse.Namespace, dsn: str) -> None:
    from simulators.card.keys import IssuerMasters
    from simulators.ecard import platform_from_env
    from simulators.keys import terminal_keys_from_env
    from simulators.report import run_his_and_report

    # The simulated terminals, cards and e-card platform all take their keys from the
    # demo key file the engine's soft HSM opens (YIKATONG_HSM_KEY_FILE).
    keys = terminal_keys_from_env()
    await run_his_and_report(
        args.url,
        args.seed,
        args.persons,
        args.visits,
        args.concurrency,
        keys,
        IssuerMasters.from_env(),
        platform_from_env(),
    )


async def _pos(args: argparse.Namespace, dsn: str) -> None:
    from simulators.card.keys import IssuerMasters
    from simulators.ecard import platform_from_env
    from simulators.keys import terminal_keys_from_env
    from simulators.report import run_pos_and_report

    if args.purchases < 1 or args.concurrency < 1:
        raise SystemExit("yikatong sim pos: --purchases and --concurrency must be at least 1")
    if not 0.0 <= args.lost_answer_share <= 1.0:
        raise SystemExit("yikatong sim pos: --lost-answer-share must be between 0 and 1")
    # Keys as for `sim his`: the demo key file the engine's soft HSM opens.
    await run_pos_and_report(
        args.url,
        args.seed,
        args.persons,
        args.purchases,
        args.concurrency,
        terminal_keys_from_env(),
        IssuerMasters.from_env(),
        platform_from_env(),
        lost_answer_share=args.lost_answer_share,
    )


async def _hsm(args: argparse.Namespace, dsn: str) -> None:
    from hsm.keystore import KeyStoreError
    from simulators import hsm_server

    try:
        await hsm_server.run(args)
    except KeyStoreError as exc:
        raise SystemExit(f"yikatong sim hsm: key file unusable: {exc}") from None
