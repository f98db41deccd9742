"""Cross-region direct settlement (异地就医) over HTTP, through a real engine and its
database: the insured region's policy pays, its ratio times the factor of the person's
filing for the treating region (policy files' [cross_region]); the settlement posts
through the pair's clearing accounts, its cancellation takes them back out, and
`ledger check` finds every pair netted out with its live settlements. Outpatient and
pharmacy, for persons of all three insured regions; a filing recorded with `yikatong
filing add` is used by the next settlement; the treating region's own price ceiling,
not the insured region's, decides what of a line is in scope.

Every visit is one 甲 line of 300.00 at a community-level institution, for an employee
who is not retired and has not settled anything this year, so the arithmetic is in each
test."""

from __future__ import annotations

import decimal
import json
import subprocess
import sys

import pytest

from simulators.population import HOME_REGION, LESHAN_REGION, NEIGHBOUR_REGION, Institution, Person
from terminals.client import yuan
from terminals.messages import setl
from terminals.messages.outpatient import cancel as cancel_msg
from terminals.messages.pharmacy import presettle as pharmacy_presettle_msg
from terminals.messages.pharmacy import settle as pharmacy_settle_msg
from tests.e2e.conftest import Deployment
from tests.e2e.helpers import NOW, assert_identities, fen, open_visit

pytestmark = pytest.mark.slow

_used: set[int] = set()


def pick(
    d: Deployment,
    region: str,
    filing: tuple[str, str] | None,
    balance: tuple[int, int] = (30_000, 10**9),
) -> Person:
    """An employee insured in `region`, not retired, with exactly `filing` (kind,
    treating region) or none, not yet used — taken from the end of the population, away
    from the persons Deployment.person() hands out."""
    for i in range(len(d.pop.persons) - 1, -1, -1):
        p = d.pop.persons[i]
        record = d.pop.filing(i)
        has = None if record is None else (record[3], record[2])
        if (
            i not in _used
            and p.insuplc_admdvs == region
            and p.insutype == "310"
            and not p.retired
            and balance[0] <= p.acct_balance_fen < balance[1]
            and has == filing
        ):
            _used.add(i)
            return p
    raise AssertionError(f"no unused employee of {region} with filing {filing}")


def community(d: Deployment, region: str, *, pharmacy: bool = False) -> Institution:
    found = [
        i
        for i in d.pop.institutions
        if i.admdvs == region
        and i.level == "community"
        and i.inst_type == ("pharmacy" if pharmacy else "hospital")
    ]
    assert found, (region, pharmacy)
    return found[0]


async def outpatient(d: Deployment, inst: Institution, person: Person) -> tuple[setl.Output, str]:
    async with d.client(inst) as c:
        await c.sign_in()
        visit = await open_visit(c, person, [("TJIA0001", "300.00", "1")])
        out = await c.settle(visit.region, visit.settle_data())
    assert_identities(out.setlinfo)
    return out, visit.mdtrt_id


async def entry_postings(d: Deployment, setl_id: str) -> dict[str, int]:
    rows = await d.fetchval(
        "SELECT jsonb_object_agg(account, amount_fen) FROM postings"
        " WHERE entry_id = (SELECT entry_id FROM settlements WHERE setl_id = $1)",
        setl_id,
    )
    assert isinstance(rows, str)
    return {k: int(v) for k, v in json.loads(rows).items()}


@pytest.mark.parametrize(
    ("insured", "treating", "filing", "fund_fen"),
    [
        # Mianyang-insured, filed in Chengdu: Mianyang's 65 % in full;
        # (300.00 − 150.00 deductible) × 65 % = 97.50.
        (NEIGHBOUR_REGION, HOME_REGION, ("filed", HOME_REGION), 9_750),
        # Mianyang-insured, not filed: 65 % × 70 % = 45.5 %; 150.00 × 45.5 % = 68.25.
        (NEIGHBOUR_REGION, HOME_REGION, None, 6_825),
        # Leshan-insured, referred to Chengdu: 60 % × 85 % = 51 %;
        # (300.00 − 180.00) × 51 % = 61.20.
        (LESHAN_REGION, HOME_REGION, ("referral", HOME_REGION), 6_120),
        # Leshan-insured, not filed: 60 % × 60 % = 36 %; 120.00 × 36 % = 43.20.
        (LESHAN_REGION, HOME_REGION, None, 4_320),
        # Chengdu-insured at a Mianyang clinic, filed there: Chengdu's 60 % in full;
        # (300.00 − 200.00) × 60 % = 60.00.
        (HOME_REGION, NEIGHBOUR_REGION, ("filed", NEIGHBOUR_REGION), 6_000),
        # Chengdu-insured in Mianyang, not filed: 60 % × 80 % = 48 %; 100.00 × 48 % = 48.00.
        (HOME_REGION, NEIGHBOUR_REGION, None, 4_800),
    ],
)
async def test_an_outpatient_visit_in_another_region_settles_under_the_insured_regions_policy(
    deployment: Deployment,
    insured: str,
    treating: str,
    filing: tuple[str, str] | None,
    fund_fen: int,
) -> None:
    person = pick(deployment, insured, filing)
    inst = community(deployment, treating)
    out, _ = await outpatient(deployment, inst, person)
    info = out.setlinfo
    assert fen(info.hifp_pay) == fund_fen
    assert info.clr_optins == treating  # the treating region's agency clears with it
    owed = fen(info.fund_pay_sumamt) + fen(info.acct_pay)
    postings = await entry_postings(deployment, info.setl_id or "")
    assert postings[f"xdue:{insured}:{treating}"] == -owed
    assert postings[f"xrecv:{treating}:{insured}"] == owed
    assert postings[f"recv:{inst.fixmedins_code}:{treating}"] == -owed
    assert f"recv:{inst.fixmedins_code}:{insured}" not in postings
    report = await deployment.ledger()
    assert report.balanced, report.violations


async def test_a_local_visit_posts_no_clearing(deployment: Deployment) -> None:
    person = pick(deployment, HOME_REGION, None)
    out, _ = await outpatient(deployment, community(deployment, HOME_REGION), person)
    info = out.setlinfo
    assert fen(info.hifp_pay) == 6_000  # (300.00 − 200.00) × 60 %
    postings = await entry_postings(deployment, info.setl_id or "")
    assert not [a for a in postings if a.startswith(("xdue:", "xrecv:"))]


async def test_a_cancelled_cross_region_settlement_takes_its_clearing_back_out(
    deployment: Deployment,
) -> None:
    person = pick(deployment, LESHAN_REGION, None)
    inst = community(deployment, HOME_REGION)
    pair = f"xrecv:{HOME_REGION}:{LESHAN_REGION}"
    before = await deployment.fetchval(
        "SELECT coalesce(sum(amount_fen), 0) FROM postings WHERE account = $1", pair
    )
    out, mdtrt_id = await outpatient(deployment, inst, person)
    info = out.setlinfo
    async with deployment.client(inst) as c:
        await c.sign_in()
        cancel = cancel_msg.Data(
            setl_id=info.setl_id or "", mdtrt_id=mdtrt_id, psn_no=person.psn_no
        )
        await c.cancel_settlement(person.insuplc_admdvs, cancel)
    after = await deployment.fetchval(
        "SELECT coalesce(sum(amount_fen), 0) FROM postings WHERE account = $1", pair
    )
    assert after == before
    report = await deployment.ledger()
    assert report.balanced, report.violations


async def test_a_pharmacy_purchase_in_another_region(deployment: Deployment) -> None:
    """Leshan-insured, referred to Chengdu, at a Chengdu pharmacy: Leshan's rules apply —
    the account pays first (先个人账户后统筹), then the pharmacy ratio 40 % × 85 % = 34 %
    pays on what in-scope money it left above the 180.00 deductible. With B in the
    account: the account pays min(B, 300.00), the fund (max(0, 300.00 − B − 180.00)) ×
    34 %."""
    person = pick(deployment, LESHAN_REGION, ("referral", HOME_REGION), balance=(1, 10**9))
    b = person.acct_balance_fen
    shop = community(deployment, HOME_REGION, pharmacy=True)
    line = pharmacy_presettle_msg.DrugDetail(
        feedetl_sn="0001",
        fee_ocur_time=NOW,
        med_list_codg="TJIA0001",
        medins_list_codg="LTJIA0001",
        det_item_fee_sumamt=yuan(300),
        cnt=decimal.Decimal(1),
        pric=yuan(300),
    )
    info = pharmacy_settle_msg.DrugInfo(
        psn_no=person.psn_no,
        mdtrt_cert_type="02",
        mdtrt_cert_no=person.certno,
        begntime=NOW,
        medfee_sumamt=yuan(300),
        insutype="310",
    )
    async with deployment.client(shop) as pos:
        await pos.sign_in()
        out = await pos.pharmacy_settle(person.insuplc_admdvs, info, [line])
    assert fen(out.setlinfo.acct_pay) == min(b, 30_000)
    above = max(0, 30_000 - b - 18_000)
    assert fen(out.setlinfo.hifp_pay) == (above * 34 * 2 + 100) // 200  # × 34 %, half-up
    assert out.setlinfo.clr_optins == HOME_REGION
    postings = await entry_postings(deployment, out.setlinfo.setl_id or "")
    assert postings[f"xrecv:{HOME_REGION}:{LESHAN_REGION}"] == fen(out.setlinfo.hifp_pay) + fen(
        out.setlinfo.acct_pay
    )


def filing_cli(d: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", "filing", *args],
        env={"PATH": "/usr/bin:/bin", "YIKATONG_DATABASE_URL": d.dsn},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_filing_recorded_with_the_cli_is_used_by_the_next_settlement(
    deployment: Deployment,
) -> None:
    """An unfiled Mianyang-insured employee is filed for Chengdu from today: the next
    visit there pays the full 65 % (97.50, not 68.25). Refusals name the option."""
    person = pick(deployment, NEIGHBOUR_REGION, None)
    added = filing_cli(
        deployment,
        *("add", "--psn-no", person.psn_no, "--treating", HOME_REGION, "--kind", "filed"),
        *("--from", "2026-01-01"),
    )
    assert added.returncode == 0, added.stderr
    assert f"filed for {HOME_REGION}" in added.stdout
    listed = filing_cli(deployment, "list", "--psn-no", person.psn_no)
    assert f"filed for {HOME_REGION} 2026-01-01 .. open" in listed.stdout
    again = filing_cli(
        deployment,
        *("add", "--psn-no", person.psn_no, "--treating", HOME_REGION, "--kind", "filed"),
        *("--from", "2026-01-01"),
    )
    assert again.returncode != 0 and "--from: " in again.stderr
    own = filing_cli(
        deployment,
        *("add", "--psn-no", person.psn_no, "--treating", NEIGHBOUR_REGION, "--kind", "filed"),
        *("--from", "2026-01-01"),
    )
    assert own.returncode != 0 and "--treating: 510700 is the person's own" in own.stderr
    out, _ = await outpatient(deployment, community(deployment, HOME_REGION), person)
    assert fen(out.setlinfo.hifp_pay) == 9_750


async def test_ledger_check_holds_after_the_cross_region_settlements(
    deployment: Deployment,
) -> None:
    report = await deployment.ledger()
    assert report.balanced, report.violations
    pairs = await deployment.fetchval(
        "SELECT count(DISTINCT account) FROM postings WHERE account LIKE 'xrecv:%'"
    )
    # Mianyang→Chengdu, Leshan→Chengdu, Chengdu→Mianyang
    assert isinstance(pairs, int) and pairs >= 3


@pytest.mark.parametrize(
    ("insured", "treating", "overlmt_fen"),
    [
        # The province's ceiling of the capped item is 1 000.00, Mianyang's own 900.00: a
        # 1 500.00 unit is 500.00 over the limit in Chengdu and 600.00 in Mianyang —
        # whoever's patient it is.
        (HOME_REGION, HOME_REGION, 50_000),
        (NEIGHBOUR_REGION, HOME_REGION, 50_000),
        (HOME_REGION, NEIGHBOUR_REGION, 60_000),
        (LESHAN_REGION, NEIGHBOUR_REGION, 60_000),
    ],
)
async def test_the_treating_regions_price_ceiling_decides_the_scope(
    deployment: Deployment, insured: str, treating: str, overlmt_fen: int
) -> None:
    person = pick(deployment, insured, None)
    async with deployment.client(community(deployment, treating)) as c:
        await c.sign_in()
        visit = await open_visit(c, person, [("TCEIL001", "1500.00", "1")])
        out = await c.settle(visit.region, visit.settle_data())
    assert fen(out.setlinfo.overlmt_selfpay) == overlmt_fen
    assert fen(out.setlinfo.inscp_scp_amt) == 150_000 - overlmt_fen
    stored = await deployment.fetchval(
        "SELECT overlmt_amt_fen FROM fee_details WHERE mdtrt_id = $1", visit.mdtrt_id
    )
    assert stored == overlmt_fen


async def test_a_pharmacy_prices_the_basket_with_its_regions_ceiling(
    deployment: Deployment,
) -> None:
    person = pick(deployment, HOME_REGION, None)
    shop = community(deployment, NEIGHBOUR_REGION, pharmacy=True)
    line = pharmacy_presettle_msg.DrugDetail(
        feedetl_sn="0001",
        fee_ocur_time=NOW,
        med_list_codg="TCEIL001",
        medins_list_codg="LTCEIL001",
        det_item_fee_sumamt=yuan(1500),
        cnt=decimal.Decimal(1),
        pric=yuan(1500),
    )
    info = pharmacy_settle_msg.DrugInfo(
        psn_no=person.psn_no,
        mdtrt_cert_type="02",
        mdtrt_cert_no=person.certno,
        begntime=NOW,
        medfee_sumamt=yuan(1500),
        insutype="310",
    )
    async with deployment.client(shop) as pos:
        await pos.sign_in()
        trial = await pos.pharmacy_pre_settle(person.insuplc_admdvs, info, [line])
    assert trial.detlcutinfo[0].overlmt_amt == yuan(600)
    assert trial.detlcutinfo[0].pric_uplmt_amt == yuan(900)


def test_ledger_clearing_shows_each_pair_owed_from_both_books(deployment: Deployment) -> None:
    """`yikatong ledger clearing`: per (insured, treating) pair the live cross-region
    settlements and their fund and account money, equal in the insured region's due and
    the treating region's receivable."""
    shown = subprocess.run(
        [sys.executable, "-m", "engine", "ledger", "clearing"],
        env={"PATH": "/usr/bin:/bin", "YIKATONG_DATABASE_URL": deployment.dsn},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("live settlements")
    status = {line.split()[0]: line.split()[1:] for line in lines[1:3]}
    assert set(status) == {"local", "cross-region"}
    header = next(i for i, line in enumerate(lines) if line.startswith("insured"))
    rows = [line.split() for line in lines[header + 1 :]]
    pairs = {(r[0], r[1]): r[2:] for r in rows}
    cross_count = int(status["cross-region"][0].replace(",", ""))
    assert cross_count == sum(int(r[0].replace(",", "")) for r in pairs.values())
    assert (NEIGHBOUR_REGION, HOME_REGION) in pairs and (HOME_REGION, NEIGHBOUR_REGION) in pairs
    for count, owed, due, recv in pairs.values():
        assert int(count.replace(",", "")) > 0 and owed == due == recv
