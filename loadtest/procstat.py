"""Where the cores went: CPU seconds and memory of process groups, read from /proc.

The load report splits the machine's CPU during the measured window between the engine,
PostgreSQL, the load generator, everything else and idle, and shows the engine's RSS
(DESIGN.md §11). A group is a list of root pids; each root stands for itself and all of
its descendants, found afresh at every sample (PostgreSQL backends come and go).

How CPU is counted, and why it survives processes that exit mid-window: a group's
total at one instant is, over its live members, utime + stime (own CPU, all threads)
plus cutime + cstime (CPU of children it has reaped, which the kernel adds to the
parent when it waits for them). When a member exits and its parent — the postmaster
for a backend, this process for a worker — reaps it, its time moves from one term to
the other and the total stays the same, so sampling only at start and stop would be
exact; the periodic samples are for RSS and the live figures. What escapes: a member
whose parent is outside the group (a daemon that double-forks), a member reaped between
reading its parent and reading it in the last sample (one process's CPU, once), and a
root that exits (its last sampled total is kept and the group is marked incomplete).
A root of another group is never counted as a descendant, but a parent's cutime does
include such a child once it has been reaped.

Machine totals come from the aggregate line of /proc/stat (idle = idle + iowait; guest
time is already inside user). Everything is in clock ticks of SC_CLK_TCK, converted to
seconds only in reports. "Others" is the machine's busy time minus the known groups;
a group whose pids are unknown (a remote PostgreSQL) has cpu_s None and its CPU, if on
this machine, lands in others.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import msgspec

from engine.invariant import invariant

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")
POSTMASTER_LOOKUP_TIMEOUT_S = 10.0
# smaps_rollup walks the page tables: about 0.6 ms per PostgreSQL process here against
# 0.02 ms for status, so PSS is read at start, on every 10th sample and at stop.
PSS_EVERY_SAMPLES_DEFAULT = 10


class ProcParseError(ValueError):
    """A /proc file did not have the layout this module expects."""


class MachineTicks(msgspec.Struct, frozen=True):
    """The aggregate `cpu` line of /proc/stat (all CPUs), in clock ticks."""

    total: int  # user..steal; guest time is already inside user and nice
    idle: int  # idle + iowait
    cpu_count: int  # number of cpuN lines


class PidStat(msgspec.Struct, frozen=True):
    """The fields of /proc/PID/stat this module uses; times in clock ticks."""

    pid: int
    comm: str
    state: str
    ppid: int
    utime: int
    stime: int
    cutime: int
    cstime: int
    starttime: int  # since boot; tells a reused pid from the original

    @property
    def own_and_reaped(self) -> int:
        return self.utime + self.stime + self.cutime + self.cstime


def parse_proc_stat(text: str) -> MachineTicks:
    ticks: list[int] | None = None
    cpus = 0
    for line in text.splitlines():
        if line.startswith("cpu "):
            ticks = [int(v) for v in line.split()[1:9]]  # user … steal
        elif line.startswith("cpu") and line[3:4].isdigit():
            cpus += 1
    if ticks is None or len(ticks) < 5:
        raise ProcParseError("/proc/stat has no aggregate 'cpu' line")
    return MachineTicks(total=sum(ticks), idle=ticks[3] + ticks[4], cpu_count=max(cpus, 1))


def parse_pid_stat(text: str) -> PidStat:
    # comm is in parentheses and may itself contain spaces and parentheses: it ends at
    # the last ')' of the line.
    open_at, close_at = text.find("("), text.rfind(")")
    if open_at < 1 or close_at < open_at:
        raise ProcParseError(f"not a /proc/PID/stat line: {text[:80]!r}")
    rest = text[close_at + 1 :].split()  # rest[0] is field 3 (state)
    if len(rest) < 20:
        raise ProcParseError(f"/proc/PID/stat line has {len(rest) + 2} fields, expected ≥ 22")
    try:
        return PidStat(
            pid=int(text[:open_at]),
            comm=text[open_at + 1 : close_at],
            state=rest[0],
            ppid=int(rest[1]),
            utime=int(rest[11]),
            stime=int(rest[12]),
            cutime=int(rest[13]),
            cstime=int(rest[14]),
            starttime=int(rest[19]),
        )
    except ValueError as exc:
        raise ProcParseError(f"bad number in /proc/PID/stat: {text[:80]!r}") from exc


def _kib_field(text: str, key: str) -> int | None:
    for line in text.splitlines():
        if line.startswith(key):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def parse_vm_rss_bytes(status_text: str) -> int | None:
    """VmRSS from /proc/PID/status; None for zombies and kernel threads, which have none."""
    return _kib_field(status_text, "VmRSS:")


def parse_pss_bytes(smaps_rollup_text: str) -> int | None:
    """Pss from /proc/PID/smaps_rollup: shared pages split between the processes sharing
    them, so a sum over PostgreSQL's processes counts shared_buffers once."""
    return _kib_field(smaps_rollup_text, "Pss:")


def _read(path: str | Path) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:  # gone, or not ours to read
        return None


# -- sampling -------------------------------------------------------------------------------


class GroupSample(msgspec.Struct, frozen=True):
    cpu_s: float | None  # since start(); None when the group's pids are unknown
    rss_bytes: int | None  # sum of VmRSS over the group's live processes
    pss_bytes: int | None  # sum of Pss; None if not read this time or any member's unreadable
    processes: int


class Sample(msgspec.Struct, frozen=True):
    elapsed_s: float
    busy_cpu_s: float  # whole machine since start()
    idle_cpu_s: float
    groups: dict[str, GroupSample]


class GroupUsage(msgspec.Struct, frozen=True):
    pids: tuple[int, ...]  # the roots as given
    cpu_s: float | None
    cpu_share: float | None  # of the machine's CPU time in the window (all cores)
    cores_avg: float | None  # cpu_s / wall_s
    complete: bool  # False: a root was missing at start or exited, so cpu_s is a lower bound
    processes_max: int
    rss_bytes_max: int | None  # group total, max over samples
    rss_bytes_last: int | None
    rss_bytes_max_process: int | None  # the largest single process at any sample
    pss_bytes_max: int | None
    pss_bytes_last: int | None


class CpuReport(msgspec.Struct, frozen=True):
    wall_s: float
    cpu_count: int
    clock_ticks_per_s: int
    machine_cpu_s: float  # all cores' time in the window from /proc/stat ≈ cpu_count × wall_s
    busy_cpu_s: float
    idle_cpu_s: float
    idle_share: float
    others_cpu_s: float  # busy minus the groups whose CPU is known, never below 0
    others_share: float
    groups: dict[str, GroupUsage]
    samples: int


class SamplerState(enum.Enum):
    created = "created"
    running = "running"
    stopped = "stopped"


@dataclasses.dataclass(slots=True)
class _Root:
    """Bookkeeping for one root pid (mutable, private to the Sampler)."""

    pid: int
    found: bool = False  # alive at start()
    gone: bool = False  # exited (or its pid was reused) since; `ticks` keeps its last total
    starttime: int = 0
    start_ticks: int = 0
    ticks: int = 0


@dataclasses.dataclass(slots=True)
class _Group:
    roots: list[_Root]
    rss_max: int | None = None
    rss_last: int | None = None
    rss_max_process: int | None = None
    pss_max: int | None = None
    pss_last: int | None = None
    procs_max: int = 0


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


class Sampler:
    """CPU and memory of named process groups over a window: start(), sample() about
    once a second, stop(). A sample reads every /proc/*/stat (to see the trees as they
    are now) and the members' status: about 3 ms of CPU with 170 processes here.

    Calls are serialised by a lock, so sample() may run in a worker thread (to keep
    the event loop free) while stop() is called from another: cancelling the awaiting
    task does not stop the thread, and stop() then waits for its sample to finish."""

    def __init__(
        self,
        groups: Mapping[str, Sequence[int]],
        *,
        pss_every_samples: int | None = PSS_EVERY_SAMPLES_DEFAULT,
        proc: Path = PROC,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        seen: dict[int, str] = {}
        for name, pids in groups.items():
            for pid in pids:
                if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
                    raise ValueError(f"group {name!r}: {pid!r} is not a pid")
                if seen.setdefault(pid, name) != name:
                    raise ValueError(f"pid {pid} is in groups {seen[pid]!r} and {name!r}")
        self._groups = {
            name: _Group([_Root(pid) for pid in dict.fromkeys(pids)])
            for name, pids in groups.items()
        }
        self._group_of = seen  # root pid -> its group
        if pss_every_samples is not None and pss_every_samples < 1:
            raise ValueError("pss_every_samples must be at least 1, or None for no PSS")
        self._pss_every = pss_every_samples
        self._proc = proc
        self._clock = clock
        self.state = SamplerState.created
        self._t0 = 0.0
        self._machine0 = MachineTicks(total=0, idle=0, cpu_count=1)
        self._samples = 0
        self._lock = threading.Lock()

    def _scan(self) -> dict[int, PidStat]:
        table = {}
        for entry in os.scandir(self._proc):
            text = _read(f"{entry.path}/stat") if entry.name.isdigit() else None
            if text:
                with contextlib.suppress(ProcParseError):  # half-written by an exiting task
                    stat = parse_pid_stat(text)
                    table[stat.pid] = stat
        return table

    def _machine(self) -> MachineTicks:
        text = _read(self._proc / "stat")
        if text is None:
            raise ProcParseError(f"cannot read {self._proc / 'stat'}")
        return parse_proc_stat(text)

    def _measure(self, first: bool, with_pss: bool) -> dict[str, GroupSample]:
        table = self._scan()
        children: dict[int, list[int]] = {}
        for proc_stat in table.values():
            children.setdefault(proc_stat.ppid, []).append(proc_stat.pid)
        claimed: set[int] = set()
        out = {}
        for name, group in self._groups.items():
            members = []
            for root in group.roots:
                st = table.get(root.pid)
                if first and st is not None:
                    root.found, root.starttime = True, st.starttime
                if not root.found or root.gone:
                    continue
                if st is None or st.starttime != root.starttime:
                    root.gone = True  # keeps its last total
                    continue
                if root.pid in claimed:  # inside an earlier root's tree of this group
                    root.ticks = 0
                    continue
                tree = self._tree(name, root.pid, children, claimed)
                root.ticks = sum(table[pid].own_and_reaped for pid in tree)
                members += tree
                if first:
                    root.start_ticks = root.ticks
            out[name] = self._memory(group, members, with_pss)
        return out

    def _tree(
        self, group: str, root: int, children: Mapping[int, list[int]], claimed: set[int]
    ) -> list[int]:
        # A root of the same group below this root (a worker under its master) belongs to
        # this tree; a root of another group, and everything below it, never does.
        tree, todo = [], [root]
        while todo:
            pid = todo.pop()
            if pid in claimed or self._group_of.get(pid, group) != group:
                continue
            claimed.add(pid)
            tree.append(pid)
            todo += children.get(pid, ())
        return tree

    def _memory(self, group: _Group, members: Iterable[int], with_pss: bool) -> GroupSample:
        rss_total: int | None = None
        pss_total: int | None = None
        pss_complete = with_pss
        count = 0
        for pid in members:
            count += 1
            rss = parse_vm_rss_bytes(_read(f"{self._proc}/{pid}/status") or "")
            if rss is None:  # a zombie: no memory left, no smaps either
                continue
            rss_total = (rss_total or 0) + rss
            group.rss_max_process = _max(group.rss_max_process, rss)
            if pss_complete:
                pss = parse_pss_bytes(_read(f"{self._proc}/{pid}/smaps_rollup") or "")
                pss_complete = pss is not None
                pss_total = (pss_total or 0) + (pss or 0)
        if not pss_complete:
            pss_total = None
        group.rss_last = rss_total
        group.rss_max = _max(group.rss_max, rss_total)
        if with_pss:
            group.pss_last = pss_total
            group.pss_max = _max(group.pss_max, pss_total)
        group.procs_max = max(group.procs_max, count)
        return GroupSample(
            cpu_s=self._cpu_s(group), rss_bytes=rss_total, pss_bytes=pss_total, processes=count
        )

    @staticmethod
    def _cpu_s(group: _Group) -> float | None:
        found = [r for r in group.roots if r.found]
        if not found:
            return None
        return max(0, sum(r.ticks - r.start_ticks for r in found)) / CLOCK_TICKS_PER_S

    def start(self) -> None:
        with self._lock:
            invariant(self.state is SamplerState.created, f"Sampler.start() in state {self.state}")
            self._machine0 = self._machine()
            self._t0 = self._clock()
            self._measure(first=True, with_pss=self._pss_every is not None)
            self.state = SamplerState.running

    def sample(self) -> Sample:
        """Record RSS and CPU so far; returns them for a live display or a time series."""
        with self._lock:
            return self._sample(final=False)

    def _sample(self, final: bool) -> Sample:
        invariant(self.state is SamplerState.running, f"Sampler.sample() in state {self.state}")
        self._samples += 1
        every = self._pss_every
        with_pss = every is not None and (final or self._samples % every == 0)
        groups = self._measure(first=False, with_pss=with_pss)
        machine = self._machine()
        idle = (machine.idle - self._machine0.idle) / CLOCK_TICKS_PER_S
        busy = (machine.total - self._machine0.total) / CLOCK_TICKS_PER_S - idle
        return Sample(
            elapsed_s=self._clock() - self._t0, busy_cpu_s=busy, idle_cpu_s=idle, groups=groups
        )

    def stop(self) -> CpuReport:
        """Take the last sample and report the window since start()."""
        with self._lock:
            last = self._sample(final=True)
            self.state = SamplerState.stopped
        machine_s = last.busy_cpu_s + last.idle_cpu_s
        wall_s = last.elapsed_s
        usages = {}
        known = 0.0
        for name, group in self._groups.items():
            cpu_s = last.groups[name].cpu_s
            known += cpu_s or 0.0
            usages[name] = GroupUsage(
                pids=tuple(r.pid for r in group.roots),
                cpu_s=cpu_s,
                cpu_share=_share(cpu_s, machine_s),
                cores_avg=_share(cpu_s, wall_s),
                complete=bool(group.roots) and all(r.found and not r.gone for r in group.roots),
                processes_max=group.procs_max,
                rss_bytes_max=group.rss_max,
                rss_bytes_last=group.rss_last,
                rss_bytes_max_process=group.rss_max_process,
                pss_bytes_max=group.pss_max,
                pss_bytes_last=group.pss_last,
            )
        others = max(0.0, last.busy_cpu_s - known)
        return CpuReport(
            wall_s=wall_s,
            cpu_count=self._machine0.cpu_count,
            clock_ticks_per_s=CLOCK_TICKS_PER_S,
            machine_cpu_s=machine_s,
            busy_cpu_s=last.busy_cpu_s,
            idle_cpu_s=last.idle_cpu_s,
            idle_share=_share(last.idle_cpu_s, machine_s) or 0.0,
            others_cpu_s=others,
            others_share=_share(others, machine_s) or 0.0,
            groups=usages,
            samples=self._samples,
        )


def _share(part: float | None, whole: float) -> float | None:
    if part is None:
        return None
    return part / whole if whole > 0 else 0.0
