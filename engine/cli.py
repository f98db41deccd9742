"""The `yikatong` command line.

    yikatong serve [--config FILE] [--host H] [--port P]
    yikatong db migrate [--config FILE]
    yikatong db status [--config FILE]
    yikatong ledger check|seal|verify [--config FILE]
    yikatong hsm new-master-key|init|list|import|export
    yikatong config show [--config FILE]
    yikatong seed ... / sim ...   (added by the simulators package, if installed)

Exit status: 0 success, 1 unexpected failure, 2 bad configuration or usage, 3 database
unusable (unreachable, or schema newer than this build / edited migrations), 4 HSM or
key file unusable (missing or wrong master key, tampered file, bad key block).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import uvloop

from engine import __version__, constants, filing_cli, hsm_cli
from engine.config import Config, ConfigError, load_config
from engine.db import migrate
from engine.db.embedded import EmbeddedDatabaseError
from engine.db.lifecycle import database_dsn
from engine.db.pool import DatabaseUnavailableError
from engine.hsm_runtime import HsmSetupError
from engine.logs import configure_logging
from settlement.money import fen_to_yuan

log = logging.getLogger("engine.cli")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be between 0 and 65535")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yikatong",
        description="yikatong: social security card and medical settlement engine.",
    )
    parser.add_argument("--version", action="version", version=f"yikatong {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--config",
            type=Path,
            metavar="FILE",
            help="TOML configuration file (default: $YIKATONG_CONFIG, else built-in defaults)",
        )
        return p

    serve = with_config(
        commands.add_parser(
            "serve",
            help="run the engine",
            description="Run the engine until SIGTERM or SIGINT. Starts the embedded"
            " PostgreSQL unless database.url / YIKATONG_DATABASE_URL is set.",
        )
    )
    serve.add_argument("--host", help="listen address (overrides server.host)")
    serve.add_argument("--port", type=_port, help="listen port (overrides server.port)")

    db = commands.add_parser("db", help="database schema: migrate, status")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    with_config(db_commands.add_parser("migrate", help="apply pending migrations"))
    with_config(db_commands.add_parser("status", help="show applied and pending migrations"))

    _add_ledger(commands, with_config)

    hsm_cli.add_commands(commands, with_config)
    filing_cli.add_commands(commands, with_config)

    for plugin in _plugins():
        plugin(commands, with_config)

    config = commands.add_parser("config", help="inspect the configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    with_config(config_commands.add_parser("show", help="print the effective configuration"))
    return parser


def _add_ledger(
    commands: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
) -> None:
    ledger = commands.add_parser("ledger", help="ledger invariants")
    ledger_commands = ledger.add_subparsers(dest="ledger_command", required=True, metavar="ACTION")
    with_config(
        ledger_commands.add_parser(
            "check", help="verify every ledger invariant; exit 1 on any violation"
        )
    )
    with_config(ledger_commands.add_parser("seal", help="seal finished journal entries now"))
    with_config(
        ledger_commands.add_parser(
            "clearing", help="what each insured region owes each treating region (异地就医)"
        )
    )
    with_config(
        ledger_commands.add_parser(
            "verify", help="replay the per-region hash chains; exit 1 if history changed"
        )
    )


def _plugins() -> list[Callable[..., None]]:
    """Commands contributed by other installed packages (the simulators add `seed`
    and `sim ...`) through the `yikatong.commands` entry-point group, so that the
    engine never imports them. Each adds its subparser and sets `plugin_main`, an
    async function of (args, dsn) run with the database available."""
    found: list[Callable[..., None]] = []
    for entry in sorted(
        importlib.metadata.entry_points(group="yikatong.commands"), key=lambda e: e.name
    ):
        found.append(entry.load())
    return found


def _apply_overrides(cfg: Config, args: argparse.Namespace) -> Config:
    server = cfg.server
    if getattr(args, "host", None):
        server = msgspec.structs.replace(server, host=args.host)
    if getattr(args, "port", None) is not None:
        server = msgspec.structs.replace(server, port=args.port)
    return msgspec.structs.replace(cfg, server=server)


def _masked_url(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url


async def _db_status(cfg: Config) -> None:
    async with database_dsn(cfg) as dsn:
        conn = await _connect(dsn, cfg)
        try:
            status = await migrate.migration_status(
                conn, migrate.packaged_migrations(), cfg.database.command_timeout_s
            )
        finally:
            await conn.close()
    print(
        f"schema version: {status.current_version:04d} (this build knows {status.latest_known:04d})"
    )
    for a in status.applied:
        mark = "  MODIFIED" if a.version in status.modified else ""
        print(f"  {a.version:04d} {a.name:<40} applied {a.applied_at:%Y-%m-%d %H:%M:%S%z}{mark}")
    for p in status.pending:
        print(f"  {p.version:04d} {p.name:<40} pending")
    for u in status.unknown:
        print(f"  {u.version:04d} {u.name:<40} UNKNOWN to this build")
    migrate.check_usable(status)


async def _db_migrate(cfg: Config) -> None:
    async with database_dsn(cfg) as dsn:
        conn = await _connect(dsn, cfg)
        try:
            applied = await migrate.migrate(
                conn, migrate.packaged_migrations(), cfg.database.command_timeout_s
            )
        finally:
            await conn.close()
    if not applied:
        print("schema is up to date; nothing applied")
    for m in applied:
        print(f"applied {m.version:04d} {m.name}")


async def _connect(dsn: str, cfg: Config) -> asyncpg.Connection:
    try:
        timeout_s = cfg.database.connect_timeout_s
        conn: asyncpg.Connection = await asyncpg.connect(dsn, timeout=timeout_s)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailableError(f"cannot connect to the database: {exc}") from exc
    return conn


async def _ledger_check(cfg: Config) -> None:
    from engine.ledger_check import check

    async with database_dsn(cfg) as dsn:
        conn = await _connect(dsn, cfg)
        try:
            report = await check(conn, timeout_s=max(cfg.database.command_timeout_s, 300.0))
        finally:
            await conn.close()
    print(
        f"journal entries {report.entries}, postings {report.postings},"
        f" settlements live {report.settled}, cancelled {report.cancelled}"
    )
    for v in report.violations:
        print(f"VIOLATED: {v.invariant}")
        for row in v.rows:
            print(f"    {row}")
    if not report.balanced:
        raise LedgerViolation(f"{len(report.violations)} invariant(s) violated")
    print("ledger balanced: every invariant holds")


class LedgerViolation(Exception):
    pass


async def _ledger_clearing(cfg: Config) -> None:
    from engine.ledger_check import by_cross_region_status, clearing

    timeout_s = max(cfg.database.command_timeout_s, 300.0)
    async with database_dsn(cfg) as dsn:
        conn = await _connect(dsn, cfg)
        try:
            pairs = await clearing(conn, timeout_s=timeout_s)
            statuses = await by_cross_region_status(conn, timeout_s=timeout_s)
        finally:
            await conn.close()
    print(
        "live settlements   count    medical fees     pooled fund   personal acct            cash"
    )
    for b in statuses:
        print(
            f"{'cross-region' if b.cross_region else 'local':<14} {b.settlements:>9,}"
            f" {_yuan(b.medfee_fen):>15} {_yuan(b.fund_fen):>15} {_yuan(b.acct_fen):>15}"
            f" {_yuan(b.cash_fen):>15}"
        )
    print("insured  treating  settlements          owed (yuan)    insured's due   treating's recv")
    for p in pairs:
        print(
            f"{p.insuplc_admdvs}   {p.mdtrtarea_admvs}    {p.settlements:>11,}"
            f" {_yuan(p.owed_fen):>20} {_yuan(p.due_fen):>16} {_yuan(p.receivable_fen):>17}"
        )
    if not pairs:
        print("no cross-region settlements")


def _yuan(fen: int) -> str:
    return f"{fen_to_yuan(fen):,}"


async def _ledger_seal(cfg: Config) -> None:
    from engine.ledger_seal import seal

    async with database_dsn(cfg) as dsn:
        conn = await _connect(dsn, cfg)
        try:
            total = 0
            while count := await seal(conn, batch_max=cfg.ledger.seal_batch_max, timeout_s=300):
                total += count
        finally:
            await conn.close()
    print(f"sealed {total} journal entries")


async def _ledger_verify(cfg: Config) -> None:
    from engine.ledger_seal import verify

    async with database_dsn(cfg) as dsn:
        conn = await _connect(dsn, cfg)
        try:
            report = await verify(conn, timeout_s=300)
        finally:
            await conn.close()
    print(f"sealed entries {report.sealed} in {report.regions} region chain(s)")
    for line in report.broken:
        print(f"BROKEN: {line}")
    if report.broken:
        raise LedgerViolation(f"{len(report.broken)} chain(s) broken")
    print("hash chains intact")


async def _serve(cfg: Config) -> None:
    from engine.server import serve  # the server's imports are only needed here

    await serve(cfg)


def _run(main: Callable[[Config], Coroutine[Any, Any, None]], cfg: Config) -> int:
    try:
        uvloop.run(main(cfg))
    except (DatabaseUnavailableError, EmbeddedDatabaseError, migrate.MigrationError) as exc:
        log.error("database unusable: %s", exc)
        print(f"yikatong: database unusable: {exc}", file=sys.stderr)
        return constants.EXIT_DATABASE
    except HsmSetupError as exc:
        log.error("HSM unusable: %s", exc)
        print(f"yikatong: HSM unusable: {exc}", file=sys.stderr)
        return constants.EXIT_HSM
    except LedgerViolation as exc:
        print(f"yikatong: {exc}", file=sys.stderr)
        return 1
    except Exception:
        log.exception("yikatong failed")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = _apply_overrides(load_config(getattr(args, "config", None)), args)
    except ConfigError as exc:
        print(f"yikatong: {exc}", file=sys.stderr)
        return constants.EXIT_CONFIG
    configure_logging(cfg.log.level)
    if args.command == "serve":
        return _run(_serve, cfg)
    if args.command == "db":
        return _run(_db_migrate if args.db_command == "migrate" else _db_status, cfg)
    if args.command == "hsm":
        try:
            hsm_cli.run(cfg, args)
        except hsm_cli.HsmCommandError as exc:
            print(f"yikatong: hsm: {exc}", file=sys.stderr)
            return constants.EXIT_HSM
        return 0
    if args.command == "ledger":
        action = {
            "check": _ledger_check,
            "seal": _ledger_seal,
            "verify": _ledger_verify,
            "clearing": _ledger_clearing,
        }
        return _run(action[args.ledger_command], cfg)
    plugin_main = getattr(args, "plugin_main", None)
    if plugin_main is not None:

        async def run_plugin(cfg: Config) -> None:
            if not getattr(args, "plugin_needs_database", True):
                await plugin_main(args, "")
                return
            async with database_dsn(cfg) as dsn:
                await plugin_main(args, dsn)

        return _run(run_plugin, cfg)
    if args.command == "config":
        masked = msgspec.structs.replace(cfg.database, url=_masked_url(cfg.database.url))
        shown = msgspec.json.encode(msgspec.structs.replace(cfg, database=masked))
        print(msgspec.json.format(shown).decode())
        return 0
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
