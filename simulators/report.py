"""Run the HIS simulator against an engine and print the settlement report."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import aiohttp

from simulators.card.keys import IssuerMasters
from simulators.ecard import EcardPlatform
from simulators.his import HisSimulator, Stats
from simulators.population import generate


def percentile(samples: Sequence[float], q: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def yuan(fen: int) -> str:
    return f"{fen // 100:,}.{fen % 100:02d}"


def print_report(stats: Stats) -> None:
    settle = stats.latencies_s.get("2207", [])
    print()
    print(f"  visits completed     {stats.visits:>10,}   in {stats.elapsed_s:.1f}s")
    rate = stats.settlements / max(stats.elapsed_s, 1e-9)
    print(f"  settlements (2207)   {stats.settlements:>10,}   {rate:.1f}/s")
    print(f"  cancellations (2208) {stats.cancellations:>10,}")
    print(f"  patients by card     {stats.card_visits:>10,}   (9301 + card cryptogram + 1101)")
    print(f"  patients by e-card   {stats.ecard_visits:>10,}   (signed QR token, 1101)")
    print(f"  refused or failed    {sum(stats.refused.values()):>10,}")
    for reason, count in sorted(stats.refused.items(), key=lambda kv: -kv[1])[:5]:
        print(f"      {count:>6} × {reason}")
    print(f"  medical fees (kept)  {yuan(stats.medfee_fen):>16} yuan")
    print(f"    pooled fund        {yuan(stats.fund_fen):>16} yuan")
    print(f"    personal account   {yuan(stats.account_fen):>16} yuan")
    print(f"    cash               {yuan(stats.cash_fen):>16} yuan")
    print(f"  identity failures    {stats.identity_failures:>10}")
    print("  latency by transaction (ms)      p50      p99    count")
    for infno in sorted(stats.latencies_s):
        xs = stats.latencies_s[infno]
        p50, p99 = percentile(xs, 0.5) * 1000, percentile(xs, 0.99) * 1000
        print(f"    {infno:<26}{p50:8.2f} {p99:8.2f} {len(xs):8}")
    p50, p99 = percentile(settle, 0.5) * 1000, percentile(settle, 0.99) * 1000
    print(f"  settle p50 / p99: {p50:.2f} / {p99:.2f} ms")


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
    width = 40

    tty = sys.stdout.isatty()
    step = max(1, visits // (200 if tty else 10))

    def progress(done: int) -> None:
        if done % step and done != visits:
            return
        filled = width * done // visits
        bar = f"  [{'#' * filled}{'.' * (width - filled)}] {done}/{visits} visits"
        sys.stdout.write(f"\r{bar}" if tty else f"{bar}\n")
        sys.stdout.flush()

    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        await sim.start(session)
        try:
            stats = await sim.run(visits, concurrency, progress)
        finally:
            sim.close()
    if tty:
        sys.stdout.write("\n")
    print_report(stats)
    return stats
