"""An engine process on a fresh database with a small seeded population, shared by
the tests of one module; each test works with its own persons and visits."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from engine.db.embedded import EmbeddedPostgres, socket_dir_for
from engine.ledger_check import Report, check
from simulators.keys import terminal_keys_from_env
from simulators.population import (
    HOME_REGION,
    CatalogEntry,
    Institution,
    Person,
    Population,
    generate,
    load,
)
from terminals.client import Client, Credentials
from tests.pg_wire import RoundTripProxy
from tests.support import EngineProcess, hsm_env

SEED = 4242
# Items with known classes and ceilings, for answers checked to the fen.
KNOWN_ITEMS = [
    CatalogEntry("TJIA0001", "甲类检查", "01", "201", None, 0, 10000),
    CatalogEntry("TYI10001", "乙类药品10%", "02", "101", None, 1000, 10000),
    CatalogEntry("TBING001", "丙类自费药", "03", "101", None, 0, 10000),
    CatalogEntry("TCEIL001", "限价耗材", "01", "301", 100000, 0, 150000),
]


@dataclass
class Deployment:
    engine: EngineProcess
    dsn: str
    pop: Population
    terminal_keys: Callable[[str], bytes]
    _next_person: int = 0

    def hospital(self, index: int = 0) -> Institution:
        return [i for i in self.pop.institutions if i.inst_type == "hospital"][index]

    def pharmacy(self, index: int = 0) -> Institution:
        return [i for i in self.pop.institutions if i.inst_type == "pharmacy"][index]

    def credentials(self, inst: Institution) -> Credentials:
        return Credentials(
            terminal_id=inst.terminal_id,
            mac_key=self.terminal_keys(inst.terminal_id),
            fixmedins_code=inst.fixmedins_code,
            fixmedins_name=inst.fixmedins_name,
            mdtrtarea_admvs=inst.admdvs,
            opter=inst.opter,
        )

    def client(self, inst: Institution | None = None) -> Client:
        return Client(self.engine.url, self.credentials(inst or self.hospital()))

    def person(self, *, employee: bool = True, region: str = HOME_REGION) -> Person:
        """A person insured in `region` (Chengdu unless asked) that no other test has
        used yet."""
        while True:
            p = self.pop.persons[self._next_person]
            self._next_person += 1
            if (p.insutype == "310") == employee and p.insuplc_admdvs == region:
                return p

    async def ledger(self) -> Report:
        conn = await asyncpg.connect(self.dsn)
        try:
            return await check(conn, timeout_s=60)
        finally:
            await conn.close()

    async def fetchval(self, sql: str, *args: object) -> object:
        conn = await asyncpg.connect(self.dsn)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()


@contextlib.contextmanager
def deployed(
    pg_server: EmbeddedPostgres,
    tmp_path_factory: pytest.TempPathFactory,
    *,
    engine_dsn: Callable[[str], str] | None = None,
    engine_env: dict[str, str] | None = None,
) -> Iterator[Deployment]:
    """A new database with the seeded population and an engine on it. `engine_dsn`
    maps the database name to the DSN the engine uses (for a proxy in between); the
    seeding and the test's own queries go to the server directly."""
    name = f"e2e_{uuid.uuid4().hex[:12]}"
    dsn = pg_server.dsn.replace("/postgres?", f"/{name}?")

    async def create() -> None:
        admin = await asyncpg.connect(pg_server.dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    async def seed(pop: Population) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await load(conn, pop)
        finally:
            await conn.close()

    asyncio.run(create())
    tmp: Path = tmp_path_factory.mktemp("e2e")
    env = {
        "YIKATONG_DATABASE_URL": engine_dsn(name) if engine_dsn else dsn,
        "YIKATONG_DATABASE_POOL_MAX_SIZE": "20",
        **(engine_env or {}),
    }
    engine = EngineProcess(tmp, env)
    try:
        engine.wait_ready()
        pop = generate(SEED, 400, hospitals=8, pharmacies=2, items=120)
        pop.catalog.extend(KNOWN_ITEMS)
        asyncio.run(seed(pop))
        keys = terminal_keys_from_env(hsm_env(tmp))
        yield Deployment(engine, dsn, pop, keys)
    finally:
        assert engine.stop() == 0, engine.log_text()


@pytest.fixture(scope="module")
def deployment(
    pg_server: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    with deployed(pg_server, tmp_path_factory) as d:
        yield d


@pytest.fixture(scope="module")
def behind_proxy(
    pg_server: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Deployment, RoundTripProxy]]:
    """A deployment whose engine reaches PostgreSQL through a proxy that counts (and can
    cut) its turns; the background jobs run once at start and then only hourly, so no
    turn of theirs falls inside a request."""
    listen_dir = tmp_path_factory.mktemp("wire")
    with (
        RoundTripProxy(socket_dir_for(pg_server.data_dir), listen_dir) as proxy,
        deployed(
            pg_server,
            tmp_path_factory,
            engine_dsn=proxy.dsn,
            engine_env={
                "YIKATONG_LEDGER_SEAL_INTERVAL_S": "3600",
                "YIKATONG_CARD_PURGE_INTERVAL_S": "3600",
            },
        ) as d,
    ):
        yield d, proxy


@pytest.fixture
async def his(deployment: Deployment) -> AsyncIterator[Client]:
    """A signed-in client of the first hospital."""
    async with deployment.client() as client:
        await client.sign_in()
        yield client
