"""`yikatong filing`: a person's cross-region filings (异地就医备案, DOMAIN.md §4.7), the
data that decides the ratio factor of their settlements in another region.

    yikatong filing add --psn-no P --treating 510700 --kind filed --from 2026-01-01 [--to D]
    yikatong filing end --psn-no P --treating 510700 --from 2026-01-01 --to 2026-06-30
    yikatong filing list --psn-no P

Filing is done at the insured region's agency, not by an institution, so it is an
administrative command rather than a settlement transaction. The person's insured region
comes from their record; the treating region must be another one. A settlement reads
the filing valid on its day: filed before referral, none is unfiled.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import asyncpg

KINDS = ("filed", "referral")
_REGION = re.compile(r"^[0-9]{6}$")


class FilingError(SystemExit):
    """A refused filing command: the message names the option."""

    def __init__(self, message: str) -> None:
        super().__init__(f"yikatong filing: {message}")


def _day(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from None


def _region(value: str) -> str:
    if not _REGION.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a 6-digit region code")
    return value


def add_commands(
    commands: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
) -> None:
    filing = commands.add_parser("filing", help="cross-region filings of insured persons")
    actions = filing.add_subparsers(dest="filing_command", required=True, metavar="ACTION")
    add = with_config(actions.add_parser("add", help="record a filing for a treating region"))
    end = with_config(actions.add_parser("end", help="set the last day of a filing"))
    show = with_config(actions.add_parser("list", help="a person's filings"))
    for p in (add, end, show):
        p.add_argument("--psn-no", required=True)
    for p in (add, end):
        p.add_argument("--treating", required=True, type=_region, help="treating region")
        p.add_argument("--from", dest="begndate", required=True, type=_day)
    add.add_argument("--kind", required=True, choices=KINDS)
    add.add_argument("--to", dest="enddate", type=_day, default=None, help="last day (open)")
    end.add_argument("--to", dest="enddate", required=True, type=_day, help="last day")
    filing.set_defaults(plugin_main=_main, plugin_needs_database=True)


async def _main(args: argparse.Namespace, dsn: str) -> None:
    conn: asyncpg.Connection = await asyncpg.connect(dsn)
    try:
        if args.filing_command == "list":
            await _list(conn, args.psn_no)
            return
        insured = await conn.fetchval(
            "SELECT insuplc_admdvs FROM persons WHERE psn_no = $1", args.psn_no
        )
        if insured is None:
            raise FilingError(f"--psn-no: {args.psn_no} is not an insured person")
        if args.filing_command == "add":
            await _add(conn, args, insured)
        else:
            await _end(conn, args, insured)
    finally:
        await conn.close()


async def _add(conn: asyncpg.Connection, args: argparse.Namespace, insured: str) -> None:
    if args.treating == insured:
        raise FilingError(f"--treating: {insured} is the person's own insured region")
    if args.enddate is not None and args.enddate < args.begndate:
        raise FilingError("--to: before --from")
    try:
        await conn.execute(
            "INSERT INTO cross_region_filings (insuplc_admdvs, psn_no, mdtrtarea_admvs, kind,"
            " begndate, enddate) VALUES ($1, $2, $3, $4, $5, $6)",
            insured,
            args.psn_no,
            args.treating,
            args.kind,
            args.begndate,
            args.enddate,
        )
    except asyncpg.UniqueViolationError:
        raise FilingError(
            f"--from: {args.psn_no} already has a filing for {args.treating} from {args.begndate}"
        ) from None
    until = args.enddate.isoformat() if args.enddate else "open"
    print(f"{args.psn_no} ({insured}): {args.kind} for {args.treating} {args.begndate} .. {until}")


async def _end(conn: asyncpg.Connection, args: argparse.Namespace, insured: str) -> None:
    if args.enddate < args.begndate:
        raise FilingError("--to: before --from")
    status = await conn.execute(
        "UPDATE cross_region_filings SET enddate = $5 WHERE insuplc_admdvs = $1"
        " AND psn_no = $2 AND mdtrtarea_admvs = $3 AND begndate = $4",
        insured,
        args.psn_no,
        args.treating,
        args.begndate,
        args.enddate,
    )
    if status != "UPDATE 1":
        raise FilingError(
            f"--from: {args.psn_no} has no filing for {args.treating} from {args.begndate}"
        )
    print(f"{args.psn_no} ({insured}): filing for {args.treating} ends {args.enddate}")


async def _list(conn: asyncpg.Connection, psn_no: str) -> None:
    rows = await conn.fetch(
        "SELECT insuplc_admdvs, mdtrtarea_admvs, kind, begndate, enddate"
        " FROM cross_region_filings WHERE psn_no = $1 ORDER BY mdtrtarea_admvs, begndate",
        psn_no,
    )
    if not rows:
        print(f"{psn_no}: no filings (unfiled everywhere)")
    for r in rows:
        until = r["enddate"].isoformat() if r["enddate"] else "open"
        print(
            f"{psn_no} ({r['insuplc_admdvs']}): {r['kind']} for {r['mdtrtarea_admvs']}"
            f" {r['begndate']} .. {until}"
        )
