"""A stand-in for the engine for the load generator's own tests: it speaks just enough
of the settlement protocol (9001 gives a sign_no, everything else succeeds with an
empty output) and does not check signatures. What the tests exercise is the
generator's clock and control loop, so the server's timing is what they set:
a stall window, or a serial service time that caps its capacity."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from aiohttp import web

from loadtest.driver import TerminalSpec, WorkerSpec
from loadtest.scenarios import Item, PersonRef
from tests.support import free_port

TERMINAL = TerminalSpec("TH510100000001", "00" * 32, "H51010000001", "医院", "510100", "OP1")
PERSON = PersonRef("510100000000000001", "510104199001011234", "310", "510100")
ITEM = Item("X101", 100)


class FakeEngine:
    def __init__(self, *, service_s: float = 0.0) -> None:
        self.stall: tuple[float, float] | None = None  # monotonic [from, to)
        self.service_s = service_s  # requests are served one at a time, each this long
        self._serial = asyncio.Lock()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        now = time.monotonic()
        if self.stall is not None and self.stall[0] <= now < self.stall[1]:
            await asyncio.sleep(self.stall[1] - now)
        if self.service_s:
            async with self._serial:
                await asyncio.sleep(self.service_s)
        output: object = {}
        if body["infno"] == "9001":
            output = {"signinoutb": {"sign_no": "1", "sign_time": "2026-12-01 00:00:00"}}
        return web.json_response(
            {
                "infcode": 0,
                "inf_refmsgid": "x",
                "refmsg_time": "",
                "respond_time": "",
                "err_msg": None,
                "output": output,
                "yk_code": 0,
                "yk_result": "ok",
            }
        )


@contextlib.asynccontextmanager
async def serving(fake: FakeEngine) -> AsyncIterator[FakeEngine]:
    app = web.Application()
    app.router.add_post("/api/v1/tx", fake.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


def person_info_spec(
    url: str, t0: float, rate_per_s: float, duration_s: float, connections: int
) -> WorkerSpec:
    """One worker sending 1101 (person-info) at evenly spaced arrivals."""
    return WorkerSpec(
        url=url,
        worker=0,
        run_token="TEST01",
        mode="open",
        mix=[("person-info", 1)],
        rate_per_s=rate_per_s,
        concurrency=1,
        duration_s=duration_s,
        t0=t0,
        seed=1,
        arrivals="uniform",
        terminals=[TERMINAL],
        persons=[PERSON],
        catalog=[ITEM],
        timeout_s=10.0,
        max_in_flight=10_000,
        connections=connections,
    )
