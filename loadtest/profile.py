"""`--profile`: where the engine's CPU goes under the measured load, sampled by py-spy
(a sampling profiler outside the process: the engine runs unmodified).

py-spy records collapsed stacks (`--format raw`: `frame;frame;... count` per line) for
the measured window; the report keeps the top entries by own time (the innermost
Python frame: time in a C or Cython extension, such as asyncpg's protocol, is charged
to the Python function that called it) and, for our own packages, by inclusive time
(anywhere on the stack), as shares of all samples.
Idle threads are left out, so the shares are of the time the engine was busy.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

import msgspec

from hsm.secret_guard import child_env

SAMPLES_PER_S = 200
TOP = 20
STOP_GRACE_S = 20.0
# py-spy frame: "function (path/to/file.py:123)"; the line number is dropped so that
# one function's samples add up.
_LINE = re.compile(r":\d+\)$")
# Inclusive time is listed for our own code only: the interesting question is which of
# our functions the time is spent under (the event loop and the CLI are under all).
_OURS = re.compile(r"\((engine|settlement|terminals|hsm|card)/")
_NOT_OURS = ("engine/cli.py", "engine/__main__.py", "engine/server.py")


class Entry(msgspec.Struct, frozen=True, array_like=True):
    frame: str
    share: float  # of all samples


class Profile(msgspec.Struct, frozen=True):
    samples: int
    own: list[Entry]
    inclusive: list[Entry]
    raw_file: str


class ProfileError(Exception):
    """py-spy is missing or could not attach."""


def py_spy() -> str:
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise ProfileError("py-spy is not installed (it is pinned in requirements.lock)")
    return found


def _frame(text: str) -> str:
    text = _LINE.sub(")", text.strip())
    text = re.sub(r"\(\S*/site-packages/", "(", text)
    return text.replace(f"({Path.cwd()}/", "(")


def parse_collapsed(text: str, top: int = TOP) -> tuple[int, list[Entry], list[Entry]]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for f in set(frames):
            if _OURS.search(f) and not any(x in f for x in _NOT_OURS):
                inclusive[f] += count
    if total == 0:
        return 0, [], []

    def entries(c: Counter[str]) -> list[Entry]:
        return [Entry(f, round(n / total, 4)) for f, n in c.most_common(top)]

    return total, entries(own), entries(inclusive)


async def record(pid: int, duration_s: float, out: Path) -> Profile:
    """Sample `pid` for `duration_s` seconds; runs beside the load."""
    await asyncio.to_thread(out.parent.mkdir, parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        py_spy(),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(duration_s))),
        "--rate",
        str(SAMPLES_PER_S),
        "--format",
        "raw",
        "--nonblocking",
        "--output",
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=child_env(),  # py-spy needs none of our secrets
    )
    try:
        async with asyncio.timeout(duration_s + STOP_GRACE_S):
            _, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ProfileError("py-spy did not finish in time") from None
    text = await asyncio.to_thread(_read, out)
    if proc.returncode != 0 or text is None:
        raise ProfileError(f"py-spy failed ({proc.returncode}): {err.decode()[-300:]}")
    samples, own, inclusive = parse_collapsed(text)
    return Profile(samples, own, inclusive, str(out))


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None
