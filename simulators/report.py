"""Run the HIS simulator, the pharmacy POS simulator or both against an engine and
print the settlement report: per simulator its counts and latencies, and for the
demo the kept amounts by flow (outpatient 2207 / pharmacy 2102, by the answers'
clearing type) and by fund (pooled fund / personal account / cash).

By cross-region status (insured region other than the institution's) for the
pharmacies only, in the POS section: the HIS simulator's Stats keep totals, not
per-settlement regions. The database has it for both flows
(settlements.insuplc_admdvs <> mdtrtarea_admvs).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence

import aiohttp

from simulators.card.keys import IssuerMasters
from simulators.ecard import EcardPlatform
from simulators.his import HisSimulator, Stats
from simulators.population import Population, generate
from simulators.pos import Money, PosSimulator, PosStats

PROGRESS_WIDTH = 40


def percentile(samples: Sequence[float], q: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def yuan(fen: int) -> str:
    sign, fen = ("-", -fen) if fen < 0 else ("", fen)
    return f"{sign}{fen // 100:,}.{fen % 100:02d}"


def _latencies(latencies_s: dict[str, list[float]]) -> None:
    print("  latency by transaction (ms)      p50      p99    count")
    for infno in sorted(latencies_s):
        xs = latencies_s[infno]
        p50, p99 = percentile(xs, 0.5) * 1000, percentile(xs, 0.99) * 1000
        print(f"    {infno:<26}{p50:8.2f} {p99:8.2f} {len(xs):8}")


def _refused(refused: dict[str, int]) -> None:
    print(f"  refused or failed    {sum(refused.values()):>10,}")
    for reason, count in sorted(refused.items(), key=lambda kv: -kv[1])[:5]:
        print(f"      {count:>6} × {reason}")


def print_report(stats: Stats, title: str = "") -> None:
    settle = stats.latencies_s.get("2207", [])
    print()
    if title:
        print(f"  {title}")
    print(f"  visits completed     {stats.visits:>10,}   in {stats.elapsed_s:.1f}s")
    rate = stats.settlements / max(stats.elapsed_s, 1e-9)
    print(f"  settlements (2207)   {stats.settlements:>10,}   {rate:.1f}/s")
    print(f"  cancellations (2208) {stats.cancellations:>10,}")
    print(f"  patients by card     {stats.card_visits:>10,}   (9301 + card cryptogram + 1101)")
    print(f"  patients by e-card   {stats.ecard_visits:>10,}   (signed QR token, 1101)")
    _refused(stats.refused)
    print(f"  medical fees (kept)  {yuan(stats.medfee_fen):>16} yuan")
    print(f"    pooled fund        {yuan(stats.fund_fen):>16} yuan")
    print(f"    personal account   {yuan(stats.account_fen):>16} yuan")
    print(f"    cash               {yuan(stats.cash_fen):>16} yuan")
    print(f"  identity failures    {stats.identity_failures:>10}")
    _latencies(stats.latencies_s)
    p50, p99 = percentile(settle, 0.5) * 1000, percentile(settle, 0.99) * 1000
    print(f"  settle p50 / p99: {p50:.2f} / {p99:.2f} ms")


def print_pos_report(stats: PosStats, title: str = "") -> None:
    print()
    if title:
        print(f"  {title}")
    print(f"  purchases completed  {stats.purchases:>10,}   in {stats.elapsed_s:.1f}s")
    rate = stats.settlements / max(stats.elapsed_s, 1e-9)
    print(f"  settlements (2102)   {stats.settlements:>10,}   {rate:.1f}/s")
    lines = stats.lines / max(stats.settlements, 1)
    print(f"  basket lines         {stats.lines:>10,}   ({lines:.1f} per basket)")
    print(f"  cancellations (2103) {stats.cancellations:>10,}")
    reversed_ = ", ".join(f"{n} {rslt}" for rslt, n in sorted(stats.reversals.items()))
    print(f"  lost 2102, reversed  {stats.lost_answers:>10,}   (2601: {reversed_ or 'none'})")
    undone = ", ".join(f"{n} {rslt}" for rslt, n in sorted(stats.cancel_reversals.items()))
    print(f"  lost 2103, reversed  {stats.lost_cancels:>10,}   (2601: {undone or 'none'})")
    print(f"  patients by card     {stats.card_purchases:>10,}   (card proof in yk_cred_ref)")
    print(f"  patients by e-card   {stats.ecard_purchases:>10,}")
    print(f"  patients by ID no.   {stats.id_number_purchases:>10,}")
    _refused(stats.refused)
    x = stats.cross_region
    print(f"  kept cross-region    {x.settlements:>10,}   (patients insured in another region)")
    print(
        f"    medical fees {yuan(x.medfee_fen)}, pooled fund {yuan(x.fund_fen)},"
        f" personal account {yuan(x.account_fen)}, cash {yuan(x.cash_fen)} yuan"
    )
    print(f"  identity failures    {stats.identity_failures:>10}")
    _latencies(stats.latencies_s)


def flows(his: Stats | None, pos: PosStats | None) -> dict[str, Money]:
    """The kept settlements by flow: the HIS's are outpatient (2207, med_type 11);
    the POS's go by their answers' clearing type."""
    out: dict[str, Money] = {}
    if his is not None:
        out["outpatient"] = Money(
            his.settlements - his.cancellations,
            his.medfee_fen,
            his.fund_fen,
            his.account_fen,
            his.cash_fen,
        )
    for name, money in (pos.by_flow if pos is not None else {}).items():
        out.setdefault(name, Money()).merge(money)
    return out


def print_flows(by_flow: dict[str, Money]) -> None:
    """The kept settlements' amounts by flow (rows) and fund (columns)."""
    total = Money()
    for m in by_flow.values():
        total.merge(m)
    print()
    print(
        f"  {'kept (yuan)':<24}{'settlements':>12}{'medical fees':>14}{'pooled fund':>14}"
        f"{'personal acct':>14}{'cash':>14}"
    )
    for name, m in [*sorted(by_flow.items()), ("all", total)]:
        print(
            f"    {name:<22}{m.settlements:>12,}{yuan(m.medfee_fen):>14}{yuan(m.fund_fen):>14}"
            f"{yuan(m.account_fen):>14}{yuan(m.cash_fen):>14}"
        )


def progress_bar(total: int, noun: str) -> Callable[[int], None]:
    tty = sys.stdout.isatty()
    step = max(1, total // (200 if tty else 10))

    def progress(done: int) -> None:
        if done % step and done != total:
            return
        filled = PROGRESS_WIDTH * done // total
        bar = f"  [{'#' * filled}{'.' * (PROGRESS_WIDTH - filled)}] {done}/{total} {noun}"
        sys.stdout.write(f"\r{bar}" if tty else f"{bar}\n")
        sys.stdout.flush()
        if tty and done == total:
            sys.stdout.write("\n")

    return progress


async def run_his_and_report(
    url: str,
    seed: int,
    persons: int,
    visits: int,
    concurrency: int,
    terminal_keys: Callable[[str], bytes],
    masters: IssuerMasters | None = None,
    ecard: EcardPlatform | None = None,
) -> Stats:
    pop = generate(seed, persons)
    sim = HisSimulator(
        url, pop, seed=seed + 1, terminal_keys=terminal_keys, masters=masters, ecard=ecard
    )
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        await sim.start(session)
        try:
            stats = await sim.run(visits, concurrency, progress_bar(visits, "visits"))
        finally:
            sim.close()
    print_report(stats)
    return stats


def pos_simulator(
    url: str,
    pop: Population,
    seed: int,
    terminal_keys: Callable[[str], bytes],
    masters: IssuerMasters | None,
    ecard: EcardPlatform | None,
    lost_answer_share: float,
    lost_cancel_share: float | None = None,
) -> PosSimulator:
    return PosSimulator(
        url,
        pop,
        seed=seed + 2,  # the HIS simulator draws from seed + 1
        terminal_keys=terminal_keys,
        masters=masters,
        ecard=ecard,
        lost_answer_share=lost_answer_share,
        lost_cancel_share=lost_cancel_share,
    )


async def run_pos_and_report(
    url: str,
    seed: int,
    persons: int,
    purchases: int,
    concurrency: int,
    terminal_keys: Callable[[str], bytes],
    masters: IssuerMasters | None = None,
    ecard: EcardPlatform | None = None,
    *,
    lost_answer_share: float = 0.0,
) -> PosStats:
    pop = generate(seed, persons)
    sim = pos_simulator(url, pop, seed, terminal_keys, masters, ecard, lost_answer_share)
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        await sim.start(session)
        try:
            stats = await sim.run(purchases, concurrency, progress_bar(purchases, "purchases"))
        finally:
            sim.close()
    print_pos_report(stats)
    print_flows(flows(None, stats))
    return stats


async def run_demo_and_report(
    url: str,
    seed: int,
    persons: int,
    visits: int,
    concurrency: int,
    purchases: int,
    pos_concurrency: int,
    terminal_keys: Callable[[str], bytes],
    masters: IssuerMasters | None = None,
    ecard: EcardPlatform | None = None,
    *,
    lost_answer_share: float = 0.0,
    lost_cancel_share: float | None = None,
) -> tuple[Stats, PosStats]:
    """The hospitals and the pharmacies at once, over one population; the progress
    bar follows the visits, and the report ends with both flows by fund."""
    pop = generate(seed, persons)
    his = HisSimulator(
        url, pop, seed=seed + 1, terminal_keys=terminal_keys, masters=masters, ecard=ecard
    )
    pos = pos_simulator(
        url, pop, seed, terminal_keys, masters, ecard, lost_answer_share, lost_cancel_share
    )
    connector = aiohttp.TCPConnector(limit=(concurrency + pos_concurrency) * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        await his.start(session)
        await pos.start(session)
        try:
            his_stats, pos_stats = await asyncio.gather(
                his.run(visits, concurrency, progress_bar(visits, "visits")),
                pos.run(purchases, pos_concurrency),
            )
        finally:
            his.close()
            pos.close()
    print_report(his_stats, "hospitals (HIS): outpatient visits")
    print_pos_report(pos_stats, "pharmacies (POS): baskets")
    print_flows(flows(his_stats, pos_stats))
    return his_stats, pos_stats
