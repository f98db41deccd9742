"""Every dashboard panel query and every rule of deploy/prometheus/ run against a real
Prometheus (Debian's /usr/bin/prometheus) that scraped an engine under load
(DESIGN.md §9), and the error-rate alerts fire when the engine cannot reach its
database.

The history Prometheus scrapes, every second, from one engine whose database line goes
through tests.pg_wire's proxy (sealing every second):

0. one 1101 while the database is out of reach (answered 503), so that the HTTP 503
   series exists before the errors the alerts are to see: a counter series that first
   appears at 40 shows no increase to rate(), so the errors that create it would be
   invisible to the alerts (the engine starts its yikatong_tx_total error series at 0
   for that reason; the HTTP family's status values are open-ended);
1. a short open-loop run of `yikatong loadtest` against the running engine — outpatient
   settlements, pharmacy settlements, settlements cancelled, 1101 lookups by ID number —
   and a few /readyz probes, as a load balancer sends;
2. through the SDK what the load tester does not send: a settlement whose answer is
   lost, sent again (an idempotent replay), reversed twice (reversed, then
   already_reversed), a reversal of a never-sent original (tombstoned), a settlement
   sent twice with the same msgid (the second a replay), and business
   refusals (1101 of an unknown person: a refused card authentication too; a 2207 of a
   visit that does not exist);
3. a few scrapes later, a snapshot of the alerts: the error-rate alerts are quiet;
4. the database out of reach (every line cut, new ones refused) while a terminal sends
   1101s, all answered 503 database_unavailable — counted under infno "unknown": the
   engine takes a pool connection before it decodes the body.

What "returns data" means for each kind of query:

- a dashboard panel query, with `$job`/`$instance` filled in and `$__rate_interval` as
  2m (the whole history fits): a non-empty result;
- a recording rule: its recorded series exists in Prometheus (it evaluated the rule on
  the scraped data), and its expression as /api/v1/rules shows it returns data too;
- an alert: its expression is valid, and its *quantity* — the expression with every
  comparison against a number removed, and `absent(x)` read as `x` — returns data. An
  alert is a condition that is false under healthy load, so its full expression is
  rightly empty; the quantity is what it compares, the series its labels come from.

The alert rules Prometheus loads here are deploy/prometheus's with one change: every
`for:` is 0s (and the evaluation interval 1s), so that a condition that holds fires at
the next evaluation instead of minutes later; the expressions are the shipped ones.
Counts only: no timing is asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgspec
import pytest

from engine.db.embedded import EmbeddedPostgres, socket_dir_for
from terminals.client import BusinessError, Client, OutcomeUnknown, ServiceUnavailable
from terminals.messages import setl
from terminals.messages.outpatient import settle as settle_msg
from terminals.results import ResultCode
from tests.e2e.conftest import Deployment, deployed
from tests.e2e.helpers import open_visit
from tests.pg_wire import RoundTripProxy
from tests.support import free_port, hsm_env, http_get, prometheus_tool
from tests.unit.test_grafana_dashboard import dashboard, panel_queries
from tests.unit.test_prometheus_rules import ALERTS_FILE, RECORDING_FILE, rules_in

pytestmark = pytest.mark.slow

JOB = "yikatong"
RATE_INTERVAL = "2m"  # for the dashboard's $__rate_interval: the whole history
SCRAPES_AFTER_ACTIVITY = 3
ERROR_ALERTS = ("YikatongHTTPErrorRateHigh", "YikatongTransactionErrorRateHigh")
ERROR_REQUESTS = 40
WAIT_S = 30.0
_THRESHOLD_RE = re.compile(r"\s*(?:>=|<=|==|!=|>|<)\s*(?:bool\s+)?-?\d+(?:\.\d+)?(?:e[+-]?\d+)?")


class Prometheus:
    """/usr/bin/prometheus on a free loopback port with its own TSDB under `tmp`,
    scraping `target` every second."""

    def __init__(self, binary: str, tmp: Path, target: str, rule_files: list[Path]) -> None:
        self.port = free_port()
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]}],
        }
        config_file = tmp / "prometheus.yml"  # JSON: YAML parsers read it as YAML
        config_file.write_text(json.dumps(config))
        self.log_path = tmp / "prometheus.log"
        self._log: IO[Any] = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            cwd=tmp,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}?{urllib.parse.urlencode(params)}"
        status, _, body = http_get(url, timeout_s=10)
        answer = json.loads(body)
        assert status == 200 and answer["status"] == "success", (path, params, answer)
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("/api/v1/query", query=expr)["result"]
        return result

    def alerts(self) -> dict[str, list[dict[str, Any]]]:
        """Active (pending or firing) alerts by name."""
        by_name: dict[str, list[dict[str, Any]]] = {}
        for alert in self.api("/api/v1/alerts")["alerts"]:
            by_name.setdefault(alert["labels"]["alertname"], []).append(alert)
        return by_name

    def wait_ready(self) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{self.log_text()}")
            with contextlib.suppress(OSError):
                if http_get(f"http://127.0.0.1:{self.port}/-/ready", timeout_s=2)[0] == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"prometheus not ready:\n{self.log_text()}")

    def wait_scrapes(self, count: int) -> None:
        """Until `count` more scrapes of the engine have been stored."""
        since = time.time()
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            stamps = self.query(f'timestamp(up{{job="{JOB}"}})')
            if stamps and float(stamps[0]["value"][1]) >= since + count:
                return
            time.sleep(0.25)
        raise AssertionError(f"no {count} scrapes in {WAIT_S}s:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._log.close()


@dataclass
class History:
    deployment: Deployment
    prometheus: Prometheus
    instance: str
    alerts_before_errors: dict[str, list[dict[str, Any]]]
    alerts_after_errors: dict[str, list[dict[str, Any]]]


def quick_alert_rules(tmp: Path) -> Path:
    """The shipped alerts with every `for:` set to 0s (module docstring)."""
    text = re.sub(r"^(\s+)for: \S+$", r"\1for: 0s", ALERTS_FILE.read_text(), flags=re.M)
    path = tmp / ALERTS_FILE.name
    path.write_text(text)
    return path


def quantity(expr: str) -> str:
    """An alert's expression without its thresholds (module docstring)."""
    return re.sub(r"\babsent\(", "(", _THRESHOLD_RE.sub("", expr))


def drive_load(d: Deployment) -> None:
    """A short open-loop run of the load tester against the running engine."""
    tmp = d.engine.log_path.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("YIKATONG_")}
    done = subprocess.run(
        [
            sys.executable, "-m", "engine", "loadtest",
            "--url", d.engine.url, "--database-url", d.dsn,
            "--mix", "outpatient=4,pharmacy=2,cancel=1,person-info=2",
            "--rate", "20", "--duration", "4", "--warmup", "0",
            "--arrivals", "uniform", "--terminals", "2", "--out", "lt",
        ],
        env={**env, **hsm_env(tmp)},
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp / "lt" / "report.json").read_text())
    assert report["errors"] == 0, report["outcomes"]


async def what_the_load_tester_does_not_send(d: Deployment) -> None:
    """Step 2 of the module docstring."""
    async with d.client() as c:
        await c.sign_in()
        visit = await open_visit(c, d.person(), [("TJIA0001", "120.00", "1")])
        hasty = Client(d.engine.url, d.credentials(d.hospital()), timeout_s=0.0005)
        hasty.sign_no = c.sign_no  # its answers come too late
        async with hasty:
            with pytest.raises(OutcomeUnknown) as lost:
                await hasty.settle(visit.region, visit.settle_data())
        await c.resend(lost.value, setl.Output)  # the stored answer: a replay
        assert (await c.reverse(lost.value)).data.rslt == "reversed"
        assert (await c.reverse(lost.value)).data.rslt == "already_reversed"
        other = await open_visit(c, d.person(), [("TJIA0001", "80.00", "1")])
        msgid = await c.msgids.next()
        body = c.envelope(msgid, settle_msg.Input(data=other.settle_data()), other.region)
        never_sent = OutcomeUnknown("2207", msgid, body, TimeoutError())
        assert (await c.reverse(never_sent)).data.rslt == "tombstoned"
        again = await open_visit(c, d.person(), [("TJIA0001", "60.00", "1")])
        msgid = await c.msgids.next()
        body = c.envelope(msgid, settle_msg.Input(data=again.settle_data()), again.region)
        first, replayed = await c.post(body), await c.post(body)
        assert first == replayed and first[0] == 200
        for n in range(3):
            with pytest.raises(BusinessError) as refused:
                await c.person_info_by_id_number(f"510104199001010{n:03d}")
            assert refused.value.code is ResultCode.person_not_found
        missing = msgspec.structs.replace(other.settle_data(), mdtrt_id="NO-SUCH-VISIT")
        with pytest.raises(BusinessError):
            await c.settle(other.region, missing)


async def database_out_of_reach(d: Deployment, proxy: RoundTripProxy, requests: int) -> None:
    """Steps 0 and 4: every 1101 sent meanwhile is answered 503 database_unavailable;
    afterwards the engine is ready again."""
    async with d.client() as c:
        with proxy.refusing():
            proxy.cut_all()
            for _ in range(requests):
                with pytest.raises(ServiceUnavailable):
                    await c.person_info_by_id_number(d.pop.persons[0].certno)
    d.engine.wait_ready()


def wait_firing(prom: Prometheus, names: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    deadline = time.monotonic() + WAIT_S
    alerts = prom.alerts()
    while time.monotonic() < deadline:
        firing = {n for n, xs in alerts.items() if any(a["state"] == "firing" for a in xs)}
        if set(names) <= firing:
            break
        time.sleep(0.5)
        alerts = prom.alerts()
    return alerts


@pytest.fixture(scope="module")
def history(
    pg_server: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[History]:
    binary = prometheus_tool("prometheus")  # skipped or failed (CI) before anything starts
    tmp = tmp_path_factory.mktemp("prometheus")
    with (
        RoundTripProxy(
            socket_dir_for(pg_server.data_dir), tmp_path_factory.mktemp("wire")
        ) as proxy,
        deployed(
            pg_server,
            tmp_path_factory,
            engine_dsn=proxy.dsn,
            engine_env={"YIKATONG_LEDGER_SEAL_INTERVAL_S": "1"},
        ) as d,
    ):
        instance = f"127.0.0.1:{d.engine.port}"
        prom = Prometheus(binary, tmp, instance, [RECORDING_FILE, quick_alert_rules(tmp)])
        try:
            prom.wait_ready()
            prom.wait_scrapes(1)
            asyncio.run(database_out_of_reach(d, proxy, 1))
            for _ in range(3):
                assert http_get(d.engine.url + "/readyz")[0] == 200
            drive_load(d)
            asyncio.run(what_the_load_tester_does_not_send(d))
            prom.wait_scrapes(SCRAPES_AFTER_ACTIVITY)
            before = prom.alerts()
            asyncio.run(database_out_of_reach(d, proxy, ERROR_REQUESTS))
            after = wait_firing(prom, ERROR_ALERTS)
            yield History(d, prom, instance, before, after)
        finally:
            prom.stop()


def _rules(prom: Prometheus, kind: str) -> list[dict[str, Any]]:
    groups = prom.api("/api/v1/rules")["groups"]
    return [r for g in groups for r in g["rules"] if r["type"] == kind]


def test_prometheus_loaded_every_rule_and_evaluates_it_without_error(history: History) -> None:
    rules = _rules(history.prometheus, "recording") + _rules(history.prometheus, "alerting")
    shipped = {r.name for path in (RECORDING_FILE, ALERTS_FILE) for r in rules_in(path)}
    assert {r["name"] for r in rules} == shipped
    broken = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not broken


def test_every_dashboard_panel_query_returns_data(history: History) -> None:
    queries = panel_queries(
        dashboard(), job=JOB, instance=history.instance, rate_interval=RATE_INTERVAL
    )
    empty = [(title, ref) for title, ref, expr in queries if not history.prometheus.query(expr)]
    assert not empty, empty


def test_the_dashboard_variables_find_the_job_and_the_instance(history: History) -> None:
    prom = history.prometheus
    match = {"match[]": "yikatong_build_info"}
    assert JOB in prom.api("/api/v1/label/job/values", **match)
    assert history.instance in prom.api("/api/v1/label/instance/values", **match)


def test_every_recording_rule_records_series_from_the_scraped_engine(history: History) -> None:
    prom = history.prometheus
    empty = [r["name"] for r in _rules(prom, "recording") if not prom.query(r["name"])]
    assert not empty, empty
    empty = [r["name"] for r in _rules(prom, "recording") if not prom.query(r["query"])]
    assert not empty, empty


def test_every_alert_expression_is_valid_and_its_quantity_returns_data(history: History) -> None:
    prom = history.prometheus
    empty = []
    for rule in _rules(prom, "alerting"):
        prom.query(rule["query"])  # valid: Prometheus answers success
        if not prom.query(quantity(rule["query"])):
            empty.append((rule["name"], quantity(rule["query"])))
    assert not empty, empty


def test_error_rate_alerts_are_quiet_under_healthy_load(history: History) -> None:
    quiet = set(ERROR_ALERTS) & set(history.alerts_before_errors)
    assert not quiet, history.alerts_before_errors


def test_error_rate_alerts_fire_when_the_engine_cannot_reach_its_database(
    history: History,
) -> None:
    alerts = history.alerts_after_errors
    for name in ERROR_ALERTS:
        assert [a["state"] for a in alerts.get(name, [])] == ["firing"], (name, alerts)
    (tx_alert,) = alerts["YikatongTransactionErrorRateHigh"]
    assert tx_alert["labels"]["infno"] == "unknown"  # step 4 of the module docstring
    assert tx_alert["labels"]["instance"] == history.instance
    assert tx_alert["annotations"]["runbook_url"].startswith("docs/OPERATIONS.md#")


def test_what_the_test_did_is_counted_under_the_labels_the_rules_select(
    history: History,
) -> None:
    """The label values the rules and panels select on (result names, kinds, flows)
    are the ones the engine writes: each thing step 2 did is in Prometheus."""
    at_least = {
        'yikatong_reversals_total{oinfno="2207", result="reversed"}': 1,
        'yikatong_reversals_total{oinfno="2207", result="already_reversed"}': 1,
        'yikatong_reversals_total{oinfno="2207", result="tombstoned"}': 1,
        'yikatong_idempotent_replays_total{infno="2207"}': 1,
        'yikatong_tx_refusals_total{infno="1101", result="person_not_found"}': 3,
        'yikatong_card_auth_total{method="certno", result="person_not_found"}': 3,
        'yikatong_card_auth_total{method="certno", result="ok"}': 1,
        'yikatong_tx_total{infno="2207", result="ok"}': 1,
        'yikatong_tx_total{infno="2102", result="ok"}': 1,
        'yikatong_settlement_amount_fen_total{flow="outpatient", fund="fund", kind="settle"}': 1,
        'yikatong_settlement_amount_fen_total{flow="pharmacy", kind="settle"}': 1,
        'yikatong_settlement_amount_fen_total{flow="outpatient", kind="cancel"}': 1,
        'yikatong_settlement_amount_fen_total{flow="outpatient", kind="reversal"}': 1,
        'yikatong_http_requests_total{route="/api/v1/tx", method="POST", status="200"}': 1,
    }
    prom = history.prometheus
    short = {}
    for selector, least in at_least.items():
        total = sum(float(s["value"][1]) for s in prom.query(selector))
        if total < least:
            short[selector] = total
    assert not short


def test_the_quantity_of_an_alert_drops_its_thresholds_only() -> None:
    assert quantity('up{job="yikatong"} == 0') == 'up{job="yikatong"}'
    assert quantity('absent(up{job="yikatong"})') == '(up{job="yikatong"})'
    assert quantity("a:b:c > 0.01 and x[5m] >= 5") == "a:b:c and x[5m]"
    assert quantity("(t:r > 0 or q:p99 > 1e-2)") == "(t:r or q:p99)"
