"""The engine's own counts around a measured run, read from its /metrics: database round
trips per request by transaction code (the engine's `yikatong_tx_db_round_trips`
histogram, sum ÷ count over the run)."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

ROUND_TRIPS = "yikatong_tx_db_round_trips"
SCRAPE_TIMEOUT_S = 10.0

Samples = dict[tuple[str, str], float]  # (sample name, infno) -> value


async def _metrics_text(url: str) -> str | None:
    """The engine's /metrics exposition, or None when it cannot be read."""
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                url.rstrip("/") + "/metrics", timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)
            ) as resp,
        ):
            return await resp.text()
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None


async def scrape(url: str) -> Samples:
    """The round-trip histogram's `_sum` and `_count` by infno; empty if the engine
    does not export it or /metrics cannot be read."""
    text = await _metrics_text(url)
    if text is None:
        return {}
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        if family.name != ROUND_TRIPS:
            continue
        for s in family.samples:
            if s.name in (ROUND_TRIPS + "_sum", ROUND_TRIPS + "_count"):
                out[(s.name, s.labels.get("infno", ""))] = s.value
    return out


def round_trips(before: Samples, after: Samples) -> dict[str, float] | None:
    """Mean round trips per request by infno over the interval; None when the engine
    exports no such histogram."""
    if not after:
        return None
    out: dict[str, float] = {}
    for (name, infno), count in after.items():
        if not name.endswith("_count"):
            continue
        n = count - before.get((name, infno), 0.0)
        total = after.get((ROUND_TRIPS + "_sum", infno), 0.0) - before.get(
            (ROUND_TRIPS + "_sum", infno), 0.0
        )
        if n > 0:
            out[infno] = round(total / n, 2)
    return out


async def pool_max_size(url: str) -> int | None:
    """The engine's database pool size (`yikatong_db_pool_connections_max`), if exported."""
    text = await _metrics_text(url)
    if text is None:
        return None
    for family in text_string_to_metric_families(text):
        if family.name == "yikatong_db_pool_connections_max":
            for s in family.samples:
                return int(s.value)
    return None
