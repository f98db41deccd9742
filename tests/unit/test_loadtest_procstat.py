"""CPU and memory accounting from /proc: the parsers on canned lines, and the Sampler on
real child processes of this test (no mocks: /proc is always there on Linux)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from engine.invariant import InvariantViolation
from loadtest.proclookup import parse_listening_inodes, pids_listening_on
from loadtest.procstat import (
    ProcParseError,
    Sampler,
    parse_pid_stat,
    parse_proc_stat,
    parse_pss_bytes,
    parse_vm_rss_bytes,
)

PROC_STAT = """\
cpu  10422 7 4330 54019 374 0 216 9 100 0
cpu0 4321 0 1693 28608 63 0 19 2 0 0
cpu1 6100 7 2636 25410 311 0 197 7 100 0
intr 446103 0 0 0
ctxt 123456
btime 1700000000
"""

# A real postmaster line (utime 0, stime 2, cutime 984, cstime 1152: reaped backends).
POSTMASTER_STAT = (
    "4076 (postgres) S 1 4076 4076 0 -1 4194304 5008 118106 0 4 0 2 984 1152 20 0 1 0 "
    "21759 178511872 5902 18446744073709551615 4800512 10468289 140730026321200 0 0 0 "
    "4194304 19935232 84487 1 0 0 17 1 0 0 0 0 0 13929840 14038680 897474560 "
    "140730026322264 140730026322412 140730026322412 140730026323873 0\n"
)


def test_proc_stat_total_excludes_guest_and_idle_includes_iowait() -> None:
    ticks = parse_proc_stat(PROC_STAT)
    # user+nice+system+idle+iowait+irq+softirq+steal; guest (100) is inside user already.
    assert ticks.total == 10422 + 7 + 4330 + 54019 + 374 + 0 + 216 + 9
    assert ticks.idle == 54019 + 374
    assert ticks.cpu_count == 2


def test_proc_stat_without_cpu_line_is_an_error() -> None:
    with pytest.raises(ProcParseError, match="aggregate 'cpu'"):
        parse_proc_stat("intr 1 2 3\n")


def test_pid_stat_fields_of_a_postmaster() -> None:
    st = parse_pid_stat(POSTMASTER_STAT)
    assert (st.pid, st.comm, st.state, st.ppid) == (4076, "postgres", "S", 1)
    assert (st.utime, st.stime, st.cutime, st.cstime) == (0, 2, 984, 1152)
    assert st.starttime == 21759
    assert st.own_and_reaped == 2 + 984 + 1152


def test_comm_with_spaces_and_parentheses_does_not_shift_the_fields() -> None:
    tail = POSTMASTER_STAT.split(") ", 1)[1]
    for comm in ("tmux: server", "a) (b", "x)", "((", ") S 1 2 3 4 5"):
        st = parse_pid_stat(f"4076 ({comm}) {tail}")
        assert st.comm == comm
        assert (st.state, st.ppid, st.utime, st.cstime, st.starttime) == ("S", 1, 0, 1152, 21759)


@pytest.mark.parametrize(
    "line", ["", "4076 postgres S 1", "4076 (postgres) S 1 4076", "x (p) " + "1 " * 30]
)
def test_broken_pid_stat_is_an_error(line: str) -> None:
    with pytest.raises(ProcParseError):
        parse_pid_stat(line)


def test_rss_and_pss_in_bytes() -> None:
    status = "Name:\tpostgres\nVmHWM:\t   30000 kB\nVmRSS:\t   23800 kB\nRssAnon:\t 1 kB\n"
    assert parse_vm_rss_bytes(status) == 23800 * 1024
    assert parse_vm_rss_bytes("Name:\tzombie\nState:\tZ (zombie)\n") is None
    rollup = "55555eee4000-7fff4e632000 ---p 00000000 00:00 0 [rollup]\nRss: 23800 kB\nPss: 13975 kB\nPss_Dirty: 13019 kB\n"
    assert parse_pss_bytes(rollup) == 13975 * 1024


NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1082 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2000 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3000 1 0000000000000000 100 0 0 10 0
   3: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4000 1 0000000000000000 100 0 0 10 0
"""
NET_TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5000 1 0000000000000000 100 0 0 10 0
"""


def test_listening_inodes_are_the_listen_sockets_on_the_port_only() -> None:
    # 8080 = 0x1F90: two listeners (one per worker with SO_REUSEPORT) and one
    # established connection, which is not a listener; 8081 is another port.
    assert parse_listening_inodes(NET_TCP, 8080) == {1082, 4000}
    assert parse_listening_inodes(NET_TCP6, 8080) == {5000}
    assert parse_listening_inodes(NET_TCP, 9999) == set()


def test_port_lookup_finds_this_process_for_ipv4_and_ipv6_listeners() -> None:
    with socket.socket(socket.AF_INET) as v4:
        v4.bind(("127.0.0.1", 0))
        v4.listen()
        port = v4.getsockname()[1]
        assert pids_listening_on(port) == [os.getpid()]
    with socket.socket(socket.AF_INET6) as v6:
        v6.bind(("::1", 0))
        v6.listen()
        assert pids_listening_on(v6.getsockname()[1]) == [os.getpid()]


def test_port_lookup_finds_every_process_sharing_the_socket() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        child = subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.stdin.readline()"],
            stdin=subprocess.PIPE,
            pass_fds=(sock.fileno(),),
        )
        try:
            assert pids_listening_on(sock.getsockname()[1]) == sorted([os.getpid(), child.pid])
        finally:
            child.communicate(b"\n", timeout=10)


def test_port_without_listener_gives_no_pids() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening
        assert pids_listening_on(sock.getsockname()[1]) == []


# -- the Sampler on real processes ------------------------------------------------------------

BURN_S = 0.3
# Waits for a line, burns BURN_S of its own CPU, says so, waits for another line.
BURNER = f"""
import sys, time
sys.stdin.readline()
t = time.process_time()
while time.process_time() - t < {BURN_S}:
    pass
print("done", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def burner() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", BURNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def _burn(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "done\n"


def test_cpu_burned_by_a_child_is_attributed_to_its_group_not_to_its_parent(
    burner: subprocess.Popen[str],
) -> None:
    sampler = Sampler({"burner": [burner.pid], "tests": [os.getpid()]})
    sampler.start()
    _burn(burner)
    sample = sampler.sample()
    assert sample.groups["burner"].cpu_s is not None
    assert sample.groups["burner"].cpu_s >= BURN_S - 0.05
    report = sampler.stop()
    burned = report.groups["burner"]
    assert burned.cpu_s is not None and burned.cpu_s >= BURN_S - 0.05
    assert burned.complete
    assert burned.cpu_share is not None and burned.cpu_share > 0
    # The burner is our child, but another group's root: not counted in ours.
    tests = report.groups["tests"]
    assert tests.cpu_s is not None and tests.cpu_s < BURN_S - 0.1
    assert burned.rss_bytes_max is not None and burned.rss_bytes_max > 1 << 20
    assert burned.processes_max == 1
    assert report.machine_cpu_s == pytest.approx(report.busy_cpu_s + report.idle_cpu_s)
    assert report.cpu_count == os.cpu_count()


def test_children_that_exit_inside_the_window_are_counted_through_their_parent() -> None:
    sampler = Sampler({"tests": [os.getpid()]})
    sampler.start()
    script = f"import time\nt = time.process_time()\nwhile time.process_time() - t < {BURN_S}: pass"
    for _ in range(2):  # each is reaped by subprocess.run before the next sample
        subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
        sampler.sample()
    report = sampler.stop()
    assert report.groups["tests"].cpu_s is not None
    assert report.groups["tests"].cpu_s >= 2 * BURN_S - 0.05


def test_a_root_that_exits_keeps_its_cpu_and_marks_the_group_incomplete(
    burner: subprocess.Popen[str],
) -> None:
    assert burner.stdin is not None
    sampler = Sampler({"burner": [burner.pid]})
    sampler.start()
    _burn(burner)
    sampler.sample()
    burner.stdin.write("exit\n")
    burner.stdin.flush()
    burner.wait(timeout=10)
    report = sampler.stop()
    usage = report.groups["burner"]
    assert not usage.complete
    assert usage.cpu_s is not None and usage.cpu_s >= BURN_S - 0.05
    assert usage.rss_bytes_last is None  # nothing left to measure


def test_memory_of_a_group_is_the_sum_and_the_largest_process_is_kept() -> None:
    hold = "import sys\nb = b'x' * (64 << 20)\nprint('ready', flush=True)\nsys.stdin.readline()"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", hold], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        sampler = Sampler({"holders": [p.pid for p in procs]})
        sampler.start()
        report = sampler.stop()
    finally:
        for proc in procs:
            proc.communicate("\n", timeout=10)
    usage = report.groups["holders"]
    assert usage.processes_max == 2
    assert usage.rss_bytes_max_process is not None and usage.rss_bytes_max_process >= 64 << 20
    assert usage.rss_bytes_max is not None and usage.rss_bytes_max >= 2 * (64 << 20)
    assert usage.pss_bytes_max is not None and usage.pss_bytes_max >= 2 * (64 << 20)


def test_group_without_pids_is_unknown_and_its_cpu_lands_in_others() -> None:
    sampler = Sampler({"postgres": [], "tests": [os.getpid()]})
    sampler.start()
    report = sampler.stop()
    unknown = report.groups["postgres"]
    assert (unknown.cpu_s, unknown.cpu_share, unknown.rss_bytes_max) == (None, None, None)
    assert not unknown.complete
    assert report.others_cpu_s >= 0


def test_sampler_refuses_calls_in_the_wrong_state() -> None:
    sampler = Sampler({"tests": [os.getpid()]})
    with pytest.raises(InvariantViolation, match="sample"):
        sampler.sample()
    sampler.start()
    with pytest.raises(InvariantViolation, match="start"):
        sampler.start()
    sampler.stop()
    with pytest.raises(InvariantViolation, match="sample"):
        sampler.stop()


@pytest.mark.parametrize("groups", [{"a": [1], "b": [1]}, {"a": [0]}, {"a": [None]}])
def test_sampler_refuses_bad_groups(groups: dict[str, list[int]]) -> None:
    with pytest.raises(ValueError):
        Sampler(groups)


def test_pss_is_read_only_every_nth_sample_because_it_costs_a_page_table_walk() -> None:
    sampler = Sampler({"tests": [os.getpid()]}, pss_every_samples=2)
    sampler.start()
    assert sampler.sample().groups["tests"].pss_bytes is None
    assert sampler.sample().groups["tests"].pss_bytes is not None
    assert sampler.sample().groups["tests"].pss_bytes is None
    report = sampler.stop()  # the last sample always reads it
    assert report.groups["tests"].pss_bytes_last is not None
    assert report.samples == 4
