"""What the HIS and POS simulators share: one signed-in SDK client per institution of
a kind (hospital desks, pharmacy tills), and the latency of each call by its code."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

from simulators.population import Institution, Population
from terminals.client import Client, Credentials

T = TypeVar("T")


async def timed(latencies_s: dict[str, list[float]], infno: str, call: Awaitable[T]) -> T:
    """`call`'s result; its wall time appended to latencies_s[infno] (also on error)."""
    started = time.perf_counter()
    try:
        return await call
    finally:
        latencies_s[infno].append(time.perf_counter() - started)


async def signed_in_clients(
    pop: Population,
    inst_type: str,
    terminal_keys: Callable[[str], bytes],
    base_url: str,
    session: aiohttp.ClientSession,
    *,
    opter_name: str,
    latencies_s: dict[str, list[float]],
) -> list[tuple[Institution, Client]]:
    """A client per institution of `inst_type`, its operator signed in (9001, timed)."""
    out = []
    for inst in pop.institutions:
        if inst.inst_type != inst_type:
            continue
        creds = Credentials(
            terminal_id=inst.terminal_id,
            mac_key=terminal_keys(inst.terminal_id),
            fixmedins_code=inst.fixmedins_code,
            fixmedins_name=inst.fixmedins_name,
            mdtrtarea_admvs=inst.admdvs,
            opter=inst.opter,
            opter_name=opter_name,
        )
        client = Client(base_url, creds, session=session)
        await timed(latencies_s, "9001", client.sign_in())
        out.append((inst, client))
    return out
