"""The Prometheus rules of deploy/prometheus/ (DESIGN.md §9): promtool accepts them and
the example configuration, their `promtool test rules` cases pass, every alert has a
case that fires it and one that shows it quiet, a severity, a summary, a description
and a runbook section, and every metric a rule reads is one the engine exports.

promtool (Debian's `prometheus` package) parses the files; the checks of our own here
read them line by line, because the project has no YAML parser (PyYAML is not a
dependency, and the rule files are not worth one). They rely on conventions the files
keep — one `- alert:` / `- record:` line per rule, `alertname:` before `exp_alerts:` in
a test case, `exp_alerts: []` for a quiet one — and a test checks that the line scanner
counts exactly as many rules as promtool does, so a rule it missed cannot pass unseen.

Without promtool these tests are skipped on a developer's machine and fail under CI
(CI=true), where the bootstrap must have installed it.
"""

from __future__ import annotations

import re
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import prometheus_tool

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RECORDING_FILE = PROMETHEUS_DIR / "yikatong.recording.yml"
ALERTS_FILE = PROMETHEUS_DIR / "yikatong.alerts.yml"
RULE_FILES = (RECORDING_FILE, ALERTS_FILE)
RULE_TEST_FILES = tuple(sorted((PROMETHEUS_DIR / "tests").glob("*.yml")))
EXAMPLE_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
# The runbooks: one section per alert, the page the alerts' runbook_url names.
RUNBOOK_DOC = ROOT / "docs" / "OPERATIONS.md"
RUNBOOK_URL_DOC = "docs/OPERATIONS.md"
SEVERITIES = ("critical", "warning")
RUNBOOK_PARTS = ("Meaning", "Impact", "Diagnosis", "Mitigation")
# Series that are not the engine's: Prometheus's own per-target series.
PROMETHEUS_SERIES = frozenset({"up"})

_RULE_RE = re.compile(r"^\s*- (alert|record):\s*(\S+)\s*$")
_GROUP_RE = re.compile(r"^\s*- name:\s*\S")
_SERIES_NAME_RE = re.compile(r"\byikatong_[a-z0-9_]+")
_RECORDED_NAME_RE = re.compile(r"\byikatong:[a-z0-9_:]+[a-z0-9_]")


# -- tools -----------------------------------------------------------------------------------


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


# -- the line scanner (module docstring) -----------------------------------------------------


@dataclass(frozen=True)
class Rule:
    kind: str  # "alert" or "record"
    name: str
    lines: tuple[str, ...]  # from its `- alert:` line to the next rule or group, comments out

    def field(self, key: str) -> str | None:
        """The one-line value of `key:` in the rule (labels and annotations)."""
        for line in self.lines:
            m = re.match(rf"^\s*{re.escape(key)}:\s*(.*?)\s*$", line)
            if m:
                return m.group(1)
        return None

    def text(self) -> str:
        return "\n".join(self.lines)


def rules_in(path: Path) -> list[Rule]:
    found: list[Rule] = []
    current: tuple[str, str] | None = None
    body: list[str] = []

    def close() -> None:
        if current is not None:
            found.append(Rule(current[0], current[1], tuple(body)))

    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        m = _RULE_RE.match(line)
        if m or _GROUP_RE.match(line):
            close()
            current, body = ((m.group(1), m.group(2)) if m else None), []
        if current is not None:
            body.append(line)
    close()
    return found


def alerts() -> list[Rule]:
    return [r for r in rules_in(ALERTS_FILE) if r.kind == "alert"]


def recorded_names() -> set[str]:
    return {r.name for r in rules_in(RECORDING_FILE) if r.kind == "record"}


def alert_cases(path: Path) -> list[tuple[str, bool]]:
    """(alertname, fires) for each alert_rule_test case of a promtool test file."""
    cases: list[tuple[str, bool]] = []
    pending: str | None = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        name = re.match(r"^\s*(?:- )?alertname:\s*(\S+)\s*$", line)
        expected = re.match(r"^\s*exp_alerts:\s*(.*?)\s*$", line)
        if name:
            if pending is not None:
                raise AssertionError(f"{path.name}:{number}: {pending} has no exp_alerts")
            pending = name.group(1)
        elif expected:
            if pending is None:
                raise AssertionError(f"{path.name}:{number}: exp_alerts before its alertname")
            cases.append((pending, expected.group(1) != "[]"))
            pending = None
    if pending is not None:
        raise AssertionError(f"{path.name}: {pending} has no exp_alerts")
    return cases


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def runbook_sections() -> dict[str, str]:
    """Anchor → text of each heading's section in RUNBOOK_DOC."""
    sections: dict[str, str] = {}
    anchor: str | None = None
    for line in RUNBOOK_DOC.read_text().splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
        if m:
            anchor = github_slug(m.group(1))
            sections[anchor] = ""
        elif anchor is not None:
            sections[anchor] += line + "\n"
    return sections


def engine_series_names() -> set[str]:
    """Every series name the engine's registry can expose (families without a sample
    yet included: their names follow from their type)."""
    from engine.metrics import EngineMetrics

    suffixes = {
        "counter": ("_total",),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count"),
        "info": ("_info",),
        "summary": ("_sum", "_count"),
    }
    names: set[str] = set()
    for family in EngineMetrics(lambda: None).registry.collect():
        names.update(family.name + s for s in suffixes[family.type])
    return names


def series_names_in(text: str) -> set[str]:
    return set(_SERIES_NAME_RE.findall(text))


# -- promtool --------------------------------------------------------------------------------


def test_rule_files_pass_promtool_check_rules() -> None:
    done = run(prometheus_tool("promtool"), "check", "rules", *map(str, RULE_FILES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_example_config_and_its_rule_files_pass_promtool_check_config() -> None:
    done = run(prometheus_tool("promtool"), "check", "config", str(EXAMPLE_CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr


def test_rule_unit_tests_pass_promtool_test_rules() -> None:
    assert RULE_TEST_FILES, "no promtool test files in deploy/prometheus/tests/"
    done = run(prometheus_tool("promtool"), "test", "rules", *map(str, RULE_TEST_FILES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_line_scanner_finds_as_many_rules_as_promtool() -> None:
    for path in RULE_FILES:
        done = run(prometheus_tool("promtool"), "check", "rules", str(path))
        counted = re.search(r"SUCCESS: (\d+) rules found", done.stdout)
        assert counted, done.stdout + done.stderr
        assert len(rules_in(path)) == int(counted.group(1)), path.name


# -- every alert -----------------------------------------------------------------------------


def test_every_alert_has_a_firing_case_and_a_quiet_case() -> None:
    fires: dict[str, set[bool]] = defaultdict(set)
    for path in RULE_TEST_FILES:
        for name, firing in alert_cases(path):
            fires[name].add(firing)
    names = {a.name for a in alerts()}
    assert names, "no alert found in yikatong.alerts.yml"
    assert set(fires) <= names, f"cases for unknown alerts: {set(fires) - names}"
    missing = {n: {True, False} - fires[n] for n in names if fires[n] != {True, False}}
    assert not missing, f"alerts without a firing (True) or quiet (False) case: {missing}"


def test_every_alert_has_severity_summary_description_and_runbook_url() -> None:
    for alert in alerts():
        assert alert.field("severity") in SEVERITIES, alert.name
        assert alert.field("summary"), alert.name
        assert alert.field("description"), alert.name
        want = f"{RUNBOOK_URL_DOC}#{github_slug(alert.name)}"
        assert alert.field("runbook_url") == want, alert.name


def test_every_alert_has_a_runbook_section_with_meaning_impact_diagnosis_mitigation() -> None:
    sections = runbook_sections()
    for alert in alerts():
        anchor = github_slug(alert.name)
        assert anchor in sections, f"{RUNBOOK_DOC.name}: no section headed {alert.name}"
        for part in RUNBOOK_PARTS:
            assert f"**{part}**" in sections[anchor], f"{alert.name}: no **{part}**"


def test_alert_names_are_unique() -> None:
    names = [a.name for a in alerts()]
    assert len(names) == len(set(names))


# -- the metrics they read -------------------------------------------------------------------


def test_rules_read_only_series_the_engine_exports_or_rules_record() -> None:
    exported = engine_series_names() | PROMETHEUS_SERIES
    recorded = recorded_names()
    for path in RULE_FILES:
        for rule in rules_in(path):
            unknown = series_names_in(rule.text()) - exported
            assert not unknown, f"{rule.name} reads series the engine does not export: {unknown}"
            read = set(_RECORDED_NAME_RE.findall(rule.text())) - {rule.name}
            assert read <= recorded, f"{rule.name} reads unrecorded {read - recorded}"


def test_recording_rules_follow_level_metric_operations_naming() -> None:
    for rule in rules_in(RECORDING_FILE):
        assert re.fullmatch(r"yikatong:[a-z0-9_]+:[a-z0-9_]+", rule.name), rule.name


def test_scanner_notices_a_case_without_exp_alerts_and_reads_quiet_and_firing(
    tmp_path: Path,
) -> None:
    good = tmp_path / "good.yml"
    good.write_text(
        "      - alertname: A\n        exp_alerts: []\n"
        "      - eval_time: 5m\n        alertname: A\n        exp_alerts:\n"
        "          - exp_labels: {severity: warning}\n"
    )
    assert alert_cases(good) == [("A", False), ("A", True)]
    bad = tmp_path / "bad.yml"
    bad.write_text("      - alertname: A\n      - alertname: B\n        exp_alerts: []\n")
    with pytest.raises(AssertionError, match="A has no exp_alerts"):
        alert_cases(bad)
