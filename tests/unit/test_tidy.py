"""Source tidy: the rules of DESIGN.md §1-2 and STYLE.md that a parser can check, kept
by a test (after TigerBeetle's src/tidy.zig and asyncpg's tests/test__sourcecode.py).

Every production package is parsed with `ast` (nothing is imported or run):

- no bare `assert` statement, which `python -O` strips: programmer errors go through
  `engine.invariant.invariant()` (or `raise AssertionError(...)` in the rooms that may
  not import `engine`), bad input through a precise exception;
- no function longer than FUNCTION_LINES_MAX lines (STYLE.md 13);
- the import directions of DESIGN.md §1;
- no wall clock, monotonic clock or module-level `random` in `engine/txn/` (DESIGN.md
  §2, STYLE.md 8: time and randomness are injected), and no new SQL clock there.

Code that breaks a rule today is listed with its current count as its allowance: a
ratchet that may only shrink. A file over its allowance fails ("fix it"), and so does
a file under it ("lower the allowance"), so that the list always says exactly what is
left and a fixed line cannot silently come back.

Which packages count: all seven (`engine settlement terminals card hsm simulators
loadtest`) for asserts and function length — simulators and loadtest ship in the same
wheel, run as `yikatong seed/sim/loadtest` under the same interpreter flags, and the
tests lean on their checks, so an assert that vanishes under -O hurts there too. The
import rules give each room its own row, simulators and loadtest included. The clock
rule is about the deterministic transaction core and covers `engine/txn/` only.

The checkers are plain functions over (path, source), so the last tests here feed
them a violation of each kind and prove they notice.
"""

from __future__ import annotations

import ast
import functools
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "settlement", "terminals", "card", "hsm", "simulators", "loadtest")
THIS_FILE = "tests/unit/test_tidy.py"

# -- the allowances (ratchets: they may only shrink) ---------------------------------------

# Bare asserts that may remain, only in the transaction core the lead engineer is
# rewriting (engine/txn/** and engine/http_tx.py); everywhere else the count is 0.
ASSERT_ALLOWANCE: dict[str, int] = {}
ASSERT_ALLOWANCE_MAY_COVER = ("engine/txn/", "engine/http_tx.py")

# STYLE.md 13: "a function over ~60 lines is a sign to split". Lines run from `def` to
# the function's last line (decorators not counted; docstring and comments counted).
FUNCTION_LINES_MAX = 60
FUNCTION_LINES_ALLOWANCE: dict[str, int] = {
    "engine/http_tx.py::_authenticated": 73,
    "engine/metrics.py::EngineMetrics.__init__": 91,
    "engine/openapi.py::build": 95,
    "engine/server.py::_serve_with_database": 81,
    "engine/txn/outpatient/answers.py::setl_output": 66,
    "loadtest/baseline.py::run_baseline": 72,
    "loadtest/markdown.py::render": 74,
    "loadtest/run.py::measure": 77,
    "simulators/card/ssse.py::SsseApplication.__init__": 68,
    "simulators/his.py::HisSimulator.visit": 73,
    "simulators/person_draw.py::person_rows": 83,
}

# Wall clock / monotonic clock / module-level random in engine/txn/**: none today.
CLOCK_ALLOWANCE: dict[str, int] = {}

# SQL's own clock in engine/txn/** (DESIGN.md §2: "never from SQL now() for a
# decision"): none today.
SQL_CLOCK_ALLOWANCE: dict[str, int] = {}

# -- DESIGN.md §1: who may import whom -----------------------------------------------------

HSM_PROTOCOL = ("hsm", "hsm.protocol", "hsm.errors")
HSM_CLIENT_SIDE = (*HSM_PROTOCOL, "hsm.remote", "hsm.remote_wire")
ALLOWED_IMPORTS: dict[str, tuple[str, ...]] = {
    # module prefixes of *other* rooms a room may import; its own room is always allowed
    "settlement": (),
    "hsm": (),
    "card": HSM_PROTOCOL,
    "terminals": ("card", *HSM_CLIENT_SIDE),
    "engine": ("settlement", "terminals", "card", "hsm"),
    "simulators": ("card", "hsm", "terminals", "settlement"),
    # DESIGN.md §1 says terminals and simulators. Two engine modules are allowed on
    # purpose: `--baseline` must run pgbench from the very PostgreSQL install the engine
    # uses, and engine.db.embedded is the one place that knows that layout (a copy would
    # drift); engine.invariant is a leaf without imports. Nothing else of engine: the
    # load generator measures the engine through the wire, never from inside. Of hsm,
    # only secret_guard: pgbench and py-spy get environments without secrets.
    "loadtest": (
        "terminals",
        "simulators",
        "engine.db.embedded",
        "engine.invariant",
        "hsm.secret_guard",
    ),
}


# -- the source ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    path: str  # relative to the repository root, with forward slashes
    tree: ast.Module

    @property
    def room(self) -> str:
        return self.path.split("/", 1)[0]

    @property
    def module(self) -> str:
        dotted = self.path.removesuffix(".py").replace("/", ".")
        return dotted.removesuffix(".__init__")


def parse(path: str, text: str) -> Source:
    return Source(path, ast.parse(text, filename=path))


@functools.cache
def production() -> tuple[Source, ...]:
    found = []
    for package in PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            rel = file.relative_to(ROOT).as_posix()
            found.append(parse(rel, file.read_text(encoding="utf-8")))
    return tuple(found)


def ratchet(
    counts: Counter[str],
    allowance: dict[str, int],
    where: dict[str, list[str]],
    *,
    table: str,
    what: str,
    fix: str,
) -> list[str]:
    """Problems of a two-sided ratchet: over the allowance (every place listed, since a
    count cannot say which one is new) and under it (lower the allowance)."""
    problems = []
    for key in sorted(set(counts) | set(allowance)):
        have, allowed = counts.get(key, 0), allowance.get(key, 0)
        if have > allowed:
            places = "\n".join(f"    {place}" for place in where.get(key, []))
            problems.append(f"{key}: {have} {what}, {allowed} allowed — {fix}:\n{places}")
        elif have < allowed:
            entry = f"to {have}" if have else "(remove the entry)"
            problems.append(
                f"{key}: {have} {what}, {allowed} allowed — well done; lower the allowance"
                f" {entry} in {table} in {THIS_FILE}"
            )
    return problems


# -- rule 1: no bare assert --------------------------------------------------------------

ASSERT_FIX = (
    "`python -O` strips `assert`; use engine.invariant.invariant(cond, msg) for a"
    " programmer error (in hsm/, card/, terminals/, simulators/, which may not import"
    " engine: `if not cond: raise AssertionError(msg)`), or a precise exception for"
    " bad input"
)


def asserts(src: Source) -> list[int]:
    return [node.lineno for node in ast.walk(src.tree) if isinstance(node, ast.Assert)]


def assert_problems(sources: tuple[Source, ...], allowance: dict[str, int]) -> list[str]:
    counts: Counter[str] = Counter()
    where: dict[str, list[str]] = defaultdict(list)
    for src in sources:
        for line in asserts(src):
            counts[src.path] += 1
            where[src.path].append(f"{src.path}:{line}: bare assert")
    return ratchet(
        counts,
        allowance,
        where,
        table="ASSERT_ALLOWANCE",
        what="bare assert(s)",
        fix=ASSERT_FIX,
    )


def test_no_bare_assert_in_production_code() -> None:
    problems = assert_problems(production(), ASSERT_ALLOWANCE)
    assert not problems, "\n".join(problems)


def test_assert_allowance_covers_only_the_transaction_core() -> None:
    outside = [p for p in ASSERT_ALLOWANCE if not p.startswith(ASSERT_ALLOWANCE_MAY_COVER)]
    assert outside == [], (
        f"ASSERT_ALLOWANCE in {THIS_FILE} may only list engine/txn/** and"
        f" engine/http_tx.py; fix the asserts in {outside} instead"
    )


# -- rule 2: function length ------------------------------------------------------------------


def functions(src: Source) -> Iterator[tuple[str, int, int]]:
    """(qualified name, first line, length in lines) of every function, nested too."""

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, int, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = prefix + child.name
                end = child.end_lineno or child.lineno
                yield name, child.lineno, end - child.lineno + 1
                yield from walk(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, prefix + child.name + ".")
            else:
                yield from walk(child, prefix)

    yield from walk(src.tree, "")


def function_length_problems(
    sources: tuple[Source, ...], allowance: dict[str, int], lines_max: int
) -> list[str]:
    problems = []
    seen: set[str] = set()
    for src in sources:
        for name, line, length in functions(src):
            key = f"{src.path}::{name}"
            cap = allowance.get(key, lines_max)
            if key in allowance:
                if key in seen:
                    continue  # a redefinition (overload, property setter): first one counts
                seen.add(key)
            if length > cap:
                problems.append(
                    f"{src.path}:{line}: {name} is {length} lines, at most {cap} allowed —"
                    " split it (STYLE.md 13: over ~60 lines is a sign to split)"
                )
            elif key in allowance and length < cap:
                entry = (
                    f"to {length}"
                    if length > lines_max
                    else f"(remove the entry: it is within {lines_max} now)"
                )
                problems.append(
                    f"{src.path}:{line}: {name} is {length} lines, {cap} allowed — well done;"
                    f" lower its allowance {entry} in FUNCTION_LINES_ALLOWANCE in {THIS_FILE}"
                )
    for key in sorted(set(allowance) - seen):
        problems.append(
            f"{key}: listed in FUNCTION_LINES_ALLOWANCE in {THIS_FILE} but no such function"
            " any more — remove the entry (a renamed function gets no allowance: keep it"
            f" within {lines_max} lines)"
        )
    return problems


def test_no_function_longer_than_the_limit() -> None:
    problems = function_length_problems(production(), FUNCTION_LINES_ALLOWANCE, FUNCTION_LINES_MAX)
    assert not problems, "\n".join(problems)


# -- rule 3: import directions --------------------------------------------------------------


def imports(src: Source) -> Iterator[tuple[int, str]]:
    """(line, absolute module) of every import anywhere in the module: top level, inside
    functions, under `if TYPE_CHECKING:`, in try/except. `from a import b` yields `a.b`
    (b may be a submodule); relative imports are resolved against the package."""
    package = src.module if src.path.endswith("__init__.py") else src.module.rpartition(".")[0]
    for node in ast.walk(src.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - (node.level - 1)])
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                yield node.lineno, base if alias.name == "*" else f"{base}.{alias.name}"


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def import_problems(sources: tuple[Source, ...], allowed: dict[str, tuple[str, ...]]) -> list[str]:
    problems = []
    for src in sources:
        room = src.room
        for line, module in imports(src):
            target = module.split(".", 1)[0]
            if target not in PACKAGES or target == room:
                continue
            if any(_within(module, prefix) for prefix in allowed[room]):
                continue
            rule = ", ".join(allowed[room]) or "nothing of ours"
            problems.append(
                f"{src.path}:{line}: {room}/ imports {module} — DESIGN.md §1 lets {room}/"
                f" import only {rule}; move the shared piece down to a room both may"
                " import, or invert the dependency (pass it in)"
            )
    return problems


def test_imports_follow_the_rooms_of_design_section_1() -> None:
    problems = import_problems(production(), ALLOWED_IMPORTS)
    assert not problems, "\n".join(problems)


def test_every_room_has_an_import_rule() -> None:
    assert set(ALLOWED_IMPORTS) == set(PACKAGES)


# -- rule 4: no clock or module-level random in engine/txn --------------------------------

CLOCK_SCOPE = "engine/txn/"
CLOCK_BANNED = {
    "time.time": "ctx.now (the request's injected clock)",
    "time.time_ns": "ctx.now (the request's injected clock)",
    "time.monotonic": "the request's deadline in the context",
    "time.monotonic_ns": "the request's deadline in the context",
    "datetime.datetime.now": "ctx.now (the request's injected clock)",
    "datetime.datetime.utcnow": "ctx.now (the request's injected clock)",
    "datetime.datetime.today": "ctx.now (the request's injected clock)",
    "datetime.date.today": "ctx.now.date()",
}
RANDOM_INSTANCES = {"Random", "SystemRandom"}  # classes: an injected, seedable instance
SQL_CLOCK = re.compile(
    r"\b(?:now|clock_timestamp|statement_timestamp|transaction_timestamp)\s*\(\)"
    r"|\b(?:current_timestamp|current_date|localtimestamp)\b",
    re.IGNORECASE,
)


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name → the module or object it was imported as, from every import."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    head = alias.name.split(".", 1)[0]
                    names[head] = head
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _dotted(node: ast.expr) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def _is_random_function(name: str) -> bool:
    module, _, attr = name.partition(".")
    return module == "random" and attr != "" and "." not in attr and attr not in RANDOM_INSTANCES


def clock_uses(src: Source) -> Iterator[tuple[int, str, str]]:
    """(line, name, what to use instead) of every reference to a clock or to a function
    of the `random` module, called or passed along."""
    aliases = _aliases(src.tree)
    for node in ast.walk(src.tree):
        if not isinstance(node, ast.Attribute | ast.Name) or not isinstance(node.ctx, ast.Load):
            continue
        parts = _dotted(node)
        if parts is None or parts[0] not in aliases:
            continue
        name = ".".join([aliases[parts[0]], *parts[1:]])
        if name in CLOCK_BANNED:
            yield node.lineno, name, CLOCK_BANNED[name]
        elif _is_random_function(name):
            yield node.lineno, name, "a seeded random.Random carried by the context"


def sql_clock_uses(src: Source) -> Iterator[tuple[int, str]]:
    for node in ast.walk(src.tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for match in SQL_CLOCK.finditer(node.value):
                yield node.lineno, match.group(0)


def clock_problems(
    sources: tuple[Source, ...], allowance: dict[str, int], sql_allowance: dict[str, int]
) -> list[str]:
    counts: Counter[str] = Counter()
    where: dict[str, list[str]] = defaultdict(list)
    sql_counts: Counter[str] = Counter()
    sql_where: dict[str, list[str]] = defaultdict(list)
    for src in sources:
        if not src.path.startswith(CLOCK_SCOPE):
            continue
        for line, name, instead in clock_uses(src):
            counts[src.path] += 1
            where[src.path].append(f"{src.path}:{line}: {name} — use {instead}")
        for line, text in sql_clock_uses(src):
            sql_counts[src.path] += 1
            sql_where[src.path].append(f"{src.path}:{line}: SQL {text}")
    return ratchet(
        counts,
        allowance,
        where,
        table="CLOCK_ALLOWANCE",
        what="use(s) of a real clock or of module-level random",
        fix="time and randomness are injected (STYLE.md 8) so a seeded simulation replays",
    ) + ratchet(
        sql_counts,
        sql_allowance,
        sql_where,
        table="SQL_CLOCK_ALLOWANCE",
        what="use(s) of SQL's clock",
        fix="pass ctx.now as a parameter (DESIGN.md §2: never SQL now() for a decision)",
    )


def test_no_real_clock_or_global_random_in_the_transaction_core() -> None:
    problems = clock_problems(production(), CLOCK_ALLOWANCE, SQL_CLOCK_ALLOWANCE)
    assert not problems, "\n".join(problems)


# -- the checkers notice what they are for ----------------------------------------------------

VIOLATIONS = (
    """
import datetime as dt
import random
import time
from random import choice
from time import monotonic as tick

import loadtest.run
from engine import app

def f(x):
    assert x
    rng = random.Random(7)  # an injected instance: allowed
    rng.random()
    if x:
        from simulators import his
    return (time.time(), tick(), dt.datetime.now(), random.randint(1, 2), choice,
            "SELECT now()", time.perf_counter())

class C:
    def long(self):
"""
    + "        pass\n" * 70
)


def _violations(path: str) -> tuple[Source, ...]:
    return (parse(path, VIOLATIONS),)


def test_checkers_notice_a_bare_assert() -> None:
    (problem,) = assert_problems(_violations("card/x.py"), {})
    assert problem.startswith("card/x.py: 1 bare assert(s), 0 allowed")
    assert "card/x.py:12: bare assert" in problem
    (lower,) = assert_problems(_violations("engine/txn/x.py"), {"engine/txn/x.py": 2})
    assert "lower the allowance to 1" in lower


def test_checkers_notice_a_long_function_and_a_stale_allowance() -> None:
    (problem,) = function_length_problems(_violations("card/x.py"), {}, 60)
    assert problem.startswith("card/x.py:21: C.long is 71 lines, at most 60 allowed")
    problems = function_length_problems(
        _violations("card/x.py"), {"card/x.py::C.long": 80, "card/x.py::gone": 61}, 60
    )
    assert "lower its allowance to 71" in problems[0]
    assert problems[1].startswith("card/x.py::gone: listed in FUNCTION_LINES_ALLOWANCE")


def test_checkers_notice_a_forbidden_import() -> None:
    problems = import_problems(_violations("settlement/x.py"), ALLOWED_IMPORTS)
    assert [p.split(" — ")[0] for p in problems] == [
        "settlement/x.py:8: settlement/ imports loadtest.run",
        "settlement/x.py:9: settlement/ imports engine.app",
        "settlement/x.py:16: settlement/ imports simulators.his",
    ]
    assert "nothing of ours" in problems[0]
    loadtest = import_problems(_violations("loadtest/x.py"), ALLOWED_IMPORTS)
    assert [p.split(" — ")[0] for p in loadtest] == [
        "loadtest/x.py:9: loadtest/ imports engine.app"
    ]


def test_checkers_resolve_relative_imports() -> None:
    src = parse("card/sub/x.py", "from ..y import z\nfrom . import w\nfrom .v import *\n")
    assert list(imports(src)) == [(1, "card.y.z"), (2, "card.sub.w"), (3, "card.sub.v")]
    init = parse("card/sub/__init__.py", "from .w import q\n")
    assert list(imports(init)) == [(1, "card.sub.w.q")]


def test_checkers_notice_a_clock_and_global_random() -> None:
    problems = clock_problems(_violations("engine/txn/x.py"), {}, {})
    assert len(problems) == 2
    clock, sql = problems
    for expected in (
        "engine/txn/x.py:17: time.time",
        "engine/txn/x.py:17: time.monotonic",
        "engine/txn/x.py:17: datetime.datetime.now",
        "engine/txn/x.py:17: random.randint",
        "engine/txn/x.py:17: random.choice",
    ):
        assert expected in clock
    assert clock.startswith("engine/txn/x.py: 5 use(s)")
    assert "perf_counter" not in clock and "rng" not in clock
    assert "engine/txn/x.py:18: SQL now()" in sql
    assert clock_problems(_violations("engine/app.py"), {}, {}) == []  # outside the scope


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_is_parsed(package: str) -> None:
    assert any(src.room == package for src in production())
