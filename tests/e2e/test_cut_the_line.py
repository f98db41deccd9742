"""The database connection dies in the middle of a settlement (REVIEW.md example 9,
after asyncpg's tests/test_adversity.py).

The engine talks to PostgreSQL through a proxy (tests.pg_wire) that cuts its line at a
chosen statement of the request's database transaction: before or right after the
statement that claims the msgid, before the COMMIT, at every statement after BEGIN in
turn, and for every line at once while the database cannot be reached. The proxy
records whether the client had a transaction open when its line went dead. Then:

- the answer is HTTP 503 with Retry-After and result `database_unavailable` (the SDK
  raises ServiceUnavailable), never a 500;
- all or nothing: if the COMMIT never reached the server, nothing changed (the ledger
  checks pass with the same totals, and the msgid, the visit and the person have the
  same tx_log, settlement, journal, posting, account and accumulator rows as before);
  if it did, the whole settlement is there with its stored answer;
- the engine stays ready: /readyz answers 200 as soon as the proxy passes traffic;
- sending the identical request again (`client.resend`, same msgid and body) settles
  exactly once: one settlement, one journal entry, the account debited once; repeats
  of it get the stored answer byte for byte.

The same for a 2208 cancellation. Two more pin what the cuts first exposed: a line lost
after the write + COMMIT went out is answered from the committed record, not as "nothing
happened"; and a resend queued behind its committing original gets the stored answer.

The engine's background jobs run once at start and then only hourly here, so the only
statements on the wire while a request is in flight are that request's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pytest

from engine import constants
from engine.ledger_check import check
from terminals import signing
from terminals.client import PATH, Client, OutcomeUnknown, ServiceUnavailable
from terminals.envelope import Answer
from terminals.messages import setl
from terminals.messages.outpatient import cancel as cancel_msg
from terminals.messages.outpatient import settle as settle_msg
from terminals.results import ResultCode
from tests.e2e.conftest import Deployment
from tests.e2e.helpers import Visit, fen, open_visit
from tests.pg_wire import Cut, RoundTripProxy
from tests.support import http_get

pytestmark = pytest.mark.slow

# The statement that claims the msgid: an INSERT into tx_log (the first transaction
# core), or the transaction's one write function (yk_write_*, DESIGN.md §2), which
# claims it together with the rows and the stored answer.
CLAIM = r"INSERT\s+INTO\s+tx_log|\byk_write_\w+\s*\("
COMMIT = r"(?:^|;)\s*COMMIT\b[^;]*;?\s*$"  # a message whose last statement is COMMIT
ITEMS = [("TJIA0001", "100.00", "2"), ("TYI10001", "100.00", "1"), ("TBING001", "50.00", "1")]
PLATFORM_TZ = dt.timezone(dt.timedelta(hours=constants.PLATFORM_UTC_OFFSET_H))
STATEMENTS_MAX = 40  # more than any transaction of ours runs; the sweep stops before


@pytest.fixture
def d(behind_proxy: tuple[Deployment, RoundTripProxy]) -> Deployment:
    return behind_proxy[0]


@pytest.fixture
def proxy(behind_proxy: tuple[Deployment, RoundTripProxy]) -> Iterator[RoundTripProxy]:
    p = behind_proxy[1]
    yield p
    p.disarm()  # a cut that did not fire must not hit the next test


@pytest.fixture
async def his(d: Deployment) -> AsyncIterator[Client]:
    async with d.client() as client:
        await client.sign_in()
        yield client


# -- what a request may change -----------------------------------------------------------


async def footprint(d: Deployment, c: Client, msgid: str, visit: Visit) -> dict[str, Any]:
    """Every row a 2207 or 2208 of `msgid` for `visit` could write, and the ledger's
    checks and totals; equal before and after a request that changed nothing."""
    conn = await asyncpg.connect(d.dsn)
    try:
        row = await conn.fetchrow(
            "WITH s AS (SELECT setl_id, entry_id, cancel_entry_id, state FROM settlements"
            "           WHERE mdtrt_id = $3),"
            " j AS (SELECT entry_id, kind FROM journal_entries"
            "       WHERE setl_id IN (SELECT setl_id FROM s) OR msgid = $2)"
            " SELECT"
            " (SELECT count(*) FROM tx_log WHERE fixmedins_code = $1 AND msgid = $2) AS tx_log,"
            " (SELECT count(*) FROM s) AS settlements,"
            " (SELECT count(*) FROM s WHERE state = 'settled') AS settled,"
            " (SELECT count(*) FROM s WHERE state = 'cancelled') AS cancelled,"
            " (SELECT count(*) FROM j WHERE kind = 'settle') AS settle_entries,"
            " (SELECT count(*) FROM j WHERE kind = 'cancel') AS cancel_entries,"
            " (SELECT count(*) FROM postings WHERE entry_id IN (SELECT entry_id FROM j))"
            "   AS postings,"
            " (SELECT acct_balance_fen FROM persons WHERE psn_no = $4) AS acct_fen,"
            " (SELECT coalesce(sum(amount_fen), 0) FROM postings WHERE account = 'acct:' || $4)"
            "   AS acct_postings_fen,"
            " (SELECT coalesce(string_agg(a::text, ';' ORDER BY year), '')"
            "  FROM person_accumulators a WHERE psn_no = $4) AS accumulators,"
            " (SELECT count(*) FROM tx_log) AS tx_log_all,"
            " (SELECT count(*) FROM settlements) AS settlements_all",
            c.credentials.fixmedins_code,
            msgid,
            visit.mdtrt_id,
            visit.person.psn_no,
        )
        report = await check(conn, timeout_s=60)
    finally:
        await conn.close()
    assert report.balanced, report.violations
    return {
        **dict(row),
        "ledger_entries": report.entries,
        "ledger_postings": report.postings,
        "ledger_settled": report.settled,
        "ledger_cancelled": report.cancelled,
    }


# -- sending ---------------------------------------------------------------------------

_encoder = msgspec.json.Encoder(decimal_format="number")


class Request(msgspec.Struct, frozen=True):
    """One request as it goes on the wire: resent, it is these very bytes."""

    infno: str
    msgid: str
    body: bytes

    def lost(self) -> OutcomeUnknown:
        """What the SDK raises when a financial call's answer is lost."""
        return OutcomeUnknown(self.infno, self.msgid, self.body, ConnectionResetError("cut"))


async def request(c: Client, infno: str, data: dict[str, Any], region: str) -> Request:
    """The envelope of DESIGN.md §3 under the next msgid of `c`'s institution, built
    here so that the test holds the exact body whatever the SDK's input types are."""
    msgid = await c.msgids.next()
    creds = c.credentials
    body = _encoder.encode(
        {
            "infno": infno,
            "msgid": msgid,
            "mdtrtarea_admvs": creds.mdtrtarea_admvs,
            "insuplc_admdvs": region,
            "recer_sys_code": "YKT",
            "infver": "V1.0",
            "opter_type": creds.opter_type,
            "opter": creds.opter,
            "opter_name": creds.opter_name,
            "inf_time": dt.datetime.now(PLATFORM_TZ).strftime("%Y-%m-%d %H:%M:%S"),
            "fixmedins_code": creds.fixmedins_code,
            "fixmedins_name": creds.fixmedins_name,
            "sign_no": c.sign_no,
            "input": {"data": data},
        }
    )
    return Request(infno, msgid, body)


class Sent(msgspec.Struct, frozen=True):
    status: int
    retry_after: str | None
    answer: Answer
    raw: bytes


async def post(d: Deployment, c: Client, req: Request) -> Sent:
    """Sign and send `req` as the SDK does (a fresh nonce each time), keeping the
    status and headers the SDK does not return."""
    creds = c.credentials
    headers = signing.signed_headers(
        creds.terminal_id,
        creds.mac_key,
        "POST",
        PATH,
        req.body,
        now_s=int(time.time()),
        nonce=signing.new_nonce(),
    )
    headers["Content-Type"] = "application/json"
    async with (
        aiohttp.ClientSession() as session,
        session.post(d.engine.url + PATH, data=req.body, headers=headers) as resp,
    ):
        raw = await resp.read()
        answer = msgspec.json.decode(raw, type=Answer)
        return Sent(resp.status, resp.headers.get("Retry-After"), answer, raw)


def output(sent: Sent) -> setl.Output:
    assert sent.status == 200 and sent.answer.infcode == 0, sent
    return msgspec.convert(sent.answer.output, setl.Output)


def assert_try_again(sent: Sent) -> None:
    """503, Retry-After, database_unavailable: the answer to a lost database line."""
    assert sent.status == 503, sent
    assert sent.retry_after is not None and int(sent.retry_after) >= 1, sent
    assert ResultCode(sent.answer.yk_code) is ResultCode.database_unavailable, sent.answer
    assert sent.answer.infcode == -1


def assert_ready(d: Deployment) -> None:
    status, _, body = http_get(d.engine.url + "/readyz")
    assert status == 200, body


async def wait_ready(d: Deployment, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        status, _, body = http_get(d.engine.url + "/readyz")
        if status == 200:
            return
        assert time.monotonic() < deadline, f"/readyz {status} {timeout_s}s after: {body!r}"
        await asyncio.sleep(0.05)


def settle_data(visit: Visit) -> dict[str, Any]:
    return {
        "psn_no": visit.person.psn_no,
        "mdtrt_cert_type": "02",
        "mdtrt_cert_no": visit.person.certno,
        "med_type": "11",
        "medfee_sumamt": visit.total,
        "mdtrt_id": visit.mdtrt_id,
        "insutype": visit.person.insutype,
        "acct_used_flag": "1",
    }


async def pre_settled(d: Deployment, c: Client) -> tuple[Visit, Request]:
    """A new employee's visit through the SDK (1101, 2201, 2203, 2204), pre-settled
    (2206), and the 2207 that would settle it."""
    visit = await open_visit(c, d.person(employee=True), ITEMS)
    output(await post(d, c, await request(c, "2206", settle_data(visit), visit.region)))
    return visit, await request(c, "2207", settle_data(visit), visit.region)


async def assert_settled_once(
    d: Deployment, c: Client, req: Request, visit: Visit, before: dict[str, Any], out: setl.Output
) -> None:
    """One settlement of the visit, one settle entry, the account debited once."""
    after = await footprint(d, c, req.msgid, visit)
    acct_fen = fen(out.setlinfo.acct_pay)
    assert after["tx_log"] == 1
    assert (after["settlements"], after["settled"], after["settle_entries"]) == (1, 1, 1)
    assert after["acct_fen"] == before["acct_fen"] - acct_fen
    # The person's ledger account (a liability: postings are the balance negated) moved
    # by the same amount.
    assert after["acct_postings_fen"] == before["acct_postings_fen"] + acct_fen
    assert after["ledger_settled"] == before["ledger_settled"] + 1
    assert after["settlements_all"] == before["settlements_all"] + 1


async def assert_cancelled_once(
    d: Deployment, c: Client, req: Request, visit: Visit, before: dict[str, Any], out: setl.Output
) -> None:
    """The settlement cancelled once: one cancel entry, the account refunded once."""
    after = await footprint(d, c, req.msgid, visit)
    refund_fen = -fen(out.setlinfo.acct_pay)
    assert (after["tx_log"], after["settlements"], after["settled"]) == (1, 1, 0)
    assert (after["cancelled"], after["settle_entries"], after["cancel_entries"]) == (1, 1, 1)
    assert after["acct_fen"] == before["acct_fen"] + refund_fen
    assert after["acct_postings_fen"] == before["acct_postings_fen"] - refund_fen
    assert after["ledger_cancelled"] == before["ledger_cancelled"] + 1


async def assert_stored_answer(d: Deployment, c: Client, req: Request) -> None:
    """Repeats of a committed request get the stored answer byte for byte."""
    first, second = await post(d, c, req), await post(d, c, req)
    assert first.status == second.status == 200
    assert first.raw == second.raw


async def server_done(d: Deployment, timeout_s: float = 10.0) -> None:
    """Wait until no backend of the test database is busy: a line cut right after a
    statement leaves its backend running that statement (and maybe a COMMIT)."""
    conn = await asyncpg.connect(d.dsn)
    try:
        deadline = time.monotonic() + timeout_s
        while await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND state IS DISTINCT FROM 'idle'"
        ):
            assert time.monotonic() < deadline, "a cut line's backend is still busy"
            await asyncio.sleep(0.02)
    finally:
        await conn.close()


async def sweep(
    d: Deployment, proxy: RoundTripProxy, c: Client, req: Request, visit: Visit
) -> tuple[list[str], Sent]:
    """Send `req` again and again, cut before its 1st, 2nd, ... statement after BEGIN,
    until a send runs no k-th statement: then it went through. Every cut must leave
    nothing behind. Returns the statements dropped and the last answer."""
    before = await footprint(d, c, req.msgid, visit)
    dropped: list[str] = []
    for k in range(1, STATEMENTS_MAX + 1):
        cut = proxy.arm(Cut.inside_transaction(k))
        sent = await post(d, c, req)
        if not cut.fired.is_set():
            proxy.disarm()
            assert len(dropped) >= 2, dropped  # at least the write and the COMMIT
            assert re.search(COMMIT, dropped[-1], re.IGNORECASE), dropped[-1]
            return dropped, sent
        dropped.append(cut.statement)
        assert cut.in_transaction
        assert_try_again(sent)
        assert await footprint(d, c, req.msgid, visit) == before, f"cut before {cut.statement}"
        assert_ready(d)
    pytest.fail(f"{req.infno} ran more than {STATEMENTS_MAX} statements after BEGIN")


# -- 2207 ---------------------------------------------------------------------------------


# Runs first: it takes no cut, and queues two requests behind a row lock held here,
# which only works while the engine's pool has its connections (later tests cut them).
async def test_2207_resend_racing_its_committing_original_gets_the_stored_answer(
    d: Deployment, his: Client
) -> None:
    """What a resend after a lost answer meets when the original is slow to commit.
    The test holds the visit's row lock so that both requests queue behind it in
    order (the original first), then lets go."""
    visit, req = await pre_settled(d, his)
    before = await footprint(d, his, req.msgid, visit)
    holder = await asyncpg.connect(d.dsn)
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("SELECT 1 FROM visits WHERE mdtrt_id = $1 FOR UPDATE", visit.mdtrt_id)
        original = asyncio.create_task(post(d, his, req))
        await lock_waiters(holder, 1)
        resend = asyncio.create_task(post(d, his, req))
        await lock_waiters(holder, 2)
        await tx.rollback()
        first, second = await original, await resend
    finally:
        await holder.close()
    out = output(first)
    await assert_settled_once(d, his, req, visit, before, out)
    assert second.status == 200 and second.raw == first.raw, second.answer


async def lock_waiters(conn: asyncpg.Connection, n: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (
        await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock'"
        )
        < n
    ):
        assert time.monotonic() < deadline, f"fewer than {n} requests wait for the visit lock"
        await asyncio.sleep(0.02)


async def test_2207_cut_before_the_msgid_claim_is_503_changes_nothing_and_settles_on_resend(
    d: Deployment, proxy: RoundTripProxy, his: Client
) -> None:
    visit, req = await pre_settled(d, his)
    before = await footprint(d, his, req.msgid, visit)

    cut = proxy.arm(Cut.before(CLAIM))
    sent = await post(d, his, req)
    assert cut.fired.is_set(), f"no statement of the 2207 matched /{CLAIM}/: update CLAIM"
    assert cut.in_transaction, (cut.statement, cut.history)
    assert_try_again(sent)
    assert await footprint(d, his, req.msgid, visit) == before
    assert_ready(d)

    out = await his.resend(req.lost(), settle_msg.Output)
    assert out.setlinfo.setl_id
    await assert_settled_once(d, his, req, visit, before, out)
    await assert_stored_answer(d, his, req)
    await assert_settled_once(d, his, req, visit, before, out)


async def test_2207_cut_right_after_the_msgid_claim_is_all_or_nothing_and_settles_once(
    d: Deployment, proxy: RoundTripProxy, his: Client
) -> None:
    """The claim reached the server, its answer never came back. With the claim in a
    statement of its own the transaction is still open: nothing stays. With the claim
    in the one write that ends in COMMIT (DESIGN.md §2), the settlement commits whole."""
    visit, req = await pre_settled(d, his)
    before = await footprint(d, his, req.msgid, visit)

    cut = proxy.arm(Cut.after(CLAIM))
    sent = await post(d, his, req)
    assert cut.fired.is_set(), f"no statement of the 2207 matched /{CLAIM}/: update CLAIM"
    await server_done(d)
    now = await footprint(d, his, req.msgid, visit)
    if cut.in_transaction:
        assert_try_again(sent)
        assert now == before
    else:  # the answer then: test_2207_whose_commit_was_sent_is_not_reported_as_nothing_happened
        assert sent.status in (200, 503), sent
        assert (now["tx_log"], now["settled"], now["settle_entries"]) == (1, 1, 1), now
    assert_ready(d)

    out = await his.resend(req.lost(), settle_msg.Output)
    await assert_settled_once(d, his, req, visit, before, out)
    await assert_stored_answer(d, his, req)


async def test_2207_cut_at_every_statement_of_its_transaction_changes_nothing(
    d: Deployment, proxy: RoundTripProxy, his: Client
) -> None:
    """The same request, cut before its 1st, 2nd, ... statement after BEGIN, up to and
    including the COMMIT; then it goes through once."""
    visit, req = await pre_settled(d, his)
    before = await footprint(d, his, req.msgid, visit)
    _, sent = await sweep(d, proxy, his, req, visit)
    await assert_settled_once(d, his, req, visit, before, output(sent))
    await assert_stored_answer(d, his, req)


async def test_sdk_raises_service_unavailable_and_a_new_settle_settles_once(
    d: Deployment, proxy: RoundTripProxy, his: Client
) -> None:
    """As a HIS sees it: the SDK turns the 503 into ServiceUnavailable ("nothing
    happened; try again later"), true here: a new 2207 (under a new msgid, as the
    SDK's settle() draws one) settles the visit once."""
    visit, req = await pre_settled(d, his)
    before = await footprint(d, his, req.msgid, visit)
    cut = proxy.arm(Cut.before(COMMIT))
    with pytest.raises(ServiceUnavailable):
        await his.resend(req.lost(), settle_msg.Output)  # the SDK's send and decode path
    assert cut.fired.is_set() and cut.in_transaction
    assert await footprint(d, his, req.msgid, visit) == before
    assert_ready(d)
    retry = await request(his, "2207", settle_data(visit), visit.region)
    out = await his.resend(retry.lost(), settle_msg.Output)
    await assert_settled_once(d, his, retry, visit, before, out)


async def test_2207_while_the_database_is_unreachable_is_503_and_ready_again_after(
    d: Deployment, proxy: RoundTripProxy, his: Client
) -> None:
    visit, req = await pre_settled(d, his)
    before = await footprint(d, his, req.msgid, visit)
    with proxy.refusing():
        proxy.cut_all()  # every pooled connection dies; no new one gets through
        assert_try_again(await post(d, his, req))
        status, _, _ = http_get(d.engine.url + "/readyz")
        assert status == 503
    assert await footprint(d, his, req.msgid, visit) == before
    await wait_ready(d)
    out = await his.resend(req.lost(), settle_msg.Output)
    await assert_settled_once(d, his, req, visit, before, out)


async def test_2207_whose_commit_was_sent_is_not_reported_as_nothing_happened(
    d: Deployment, proxy: RoundTripProxy, his: Client
) -> None:
    visit, req = await pre_settled(d, his)
    before = await footprint(d, his, req.msgid, visit)
    cut = proxy.arm(Cut.after(COMMIT))
    try:
        out = await his.resend(req.lost(), settle_msg.Output)
    except ServiceUnavailable:
        await server_done(d)
        committed = await footprint(d, his, req.msgid, visit)
        assert committed == before, "ServiceUnavailable, yet the 2207 committed"
    except OutcomeUnknown:
        out = await his.resend(req.lost(), settle_msg.Output)
    assert cut.fired.is_set() and not cut.in_transaction
    await assert_settled_once(d, his, req, visit, before, out)


# -- 2208 ---------------------------------------------------------------------------------


async def settled(d: Deployment, c: Client) -> tuple[Visit, Request]:
    """A settled visit and the 2208 that would cancel its settlement."""
    visit, settle = await pre_settled(d, c)
    out = output(await post(d, c, settle))
    cancel = {"setl_id": out.setlinfo.setl_id, "mdtrt_id": visit.mdtrt_id}
    cancel["psn_no"] = visit.person.psn_no
    return visit, await request(c, "2208", cancel, visit.region)


async def test_2208_cut_around_its_claim_and_commit_is_503_unchanged_and_cancels_on_resend(
    d: Deployment, proxy: RoundTripProxy, his: Client
) -> None:
    visit, req = await settled(d, his)
    before = await footprint(d, his, req.msgid, visit)
    assert (before["settled"], before["cancelled"], before["cancel_entries"]) == (1, 0, 0)

    for cut in (Cut.before(CLAIM), Cut.after(CLAIM), Cut.before(COMMIT)):
        proxy.arm(cut)
        sent = await post(d, his, req)
        assert cut.fired.is_set(), f"2208 never ran a statement {cut.description}"
        await server_done(d)
        if not cut.in_transaction:
            # The claim and the COMMIT went in one message: committed whole, and
            # answered from the store when the engine could look it up, else 503.
            assert sent.status in (200, 503), sent
            break
        assert_try_again(sent)
        assert await footprint(d, his, req.msgid, visit) == before, cut.description
        assert_ready(d)

    out = await his.resend(req.lost(), cancel_msg.Output)
    await assert_cancelled_once(d, his, req, visit, before, out)
    await assert_stored_answer(d, his, req)
    await assert_cancelled_once(d, his, req, visit, before, out)


async def test_2208_cut_at_every_statement_of_its_transaction_changes_nothing(
    d: Deployment, proxy: RoundTripProxy, his: Client
) -> None:
    visit, req = await settled(d, his)
    before = await footprint(d, his, req.msgid, visit)
    _, sent = await sweep(d, proxy, his, req, visit)
    await assert_cancelled_once(d, his, req, visit, before, output(sent))
    await assert_stored_answer(d, his, req)
