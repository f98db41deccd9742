"""PC/SC on a workstation: the manager never deletes a file in pcscd's runtime
directory that no pcscd of ours made (a systemd `pcscd.socket`, another container's
pcscd), removes what a killed pcscd of ours left, and refuses to start over a foreign
socket, naming it; and when the PC/SC service is someone else's, the test suite says
so loudly — a warning and a summary line with the count — and fails under CI=true.

The runtime directory is a temporary one here (PcscdManager's `runtime_dir`): the
files are real (a bound Unix socket, a pid file), only their place is not /run/pcscd.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators.pcscd import (
    OWNER_MARKER,
    FileId,
    PcscdForeignFiles,
    PcscdManager,
    record_ownership,
    remove_stale_files,
    running_pcscd_pids,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def runtime_dir(tmp_path: Path) -> Path:
    path = tmp_path / "run-pcscd"
    path.mkdir()
    return path


@pytest.fixture
def foreign_socket(runtime_dir: Path) -> Iterator[Path]:
    """A listening Unix socket at pcscd.comm that we did not make (as systemd's is)."""
    path = runtime_dir / "pcscd.comm"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
        sock.listen()
        yield path


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_foreign_socket_is_left_untouched_and_reported(
    runtime_dir: Path, foreign_socket: Path
) -> None:
    before = FileId.of(foreign_socket)
    assert remove_stale_files(runtime_dir) == [foreign_socket]
    assert FileId.of(foreign_socket) == before
    assert not (runtime_dir / OWNER_MARKER).exists()


def test_files_a_killed_pcscd_of_ours_left_are_removed(runtime_dir: Path) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(runtime_dir / "pcscd.comm"))
    sock.close()  # what a SIGKILLed pcscd leaves: the socket file, nobody listening
    (runtime_dir / "pcscd.pid").write_text("12345\n")
    record_ownership(dead_pid(), runtime_dir)
    assert remove_stale_files(runtime_dir) == []
    assert sorted(p.name for p in runtime_dir.iterdir()) == []  # marker gone too


def test_a_socket_replaced_after_ours_died_is_not_ours(runtime_dir: Path) -> None:
    """Same path, same name: a new file is told apart by its identity (inode, ctime)."""
    ours = runtime_dir / "pcscd.comm"
    first = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    first.bind(str(ours))
    first.close()
    record_ownership(dead_pid(), runtime_dir)
    ours.unlink()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as theirs:
        theirs.bind(str(ours))
        theirs.listen()
        before = FileId.of(ours)
        assert remove_stale_files(runtime_dir) == [ours]
        assert FileId.of(ours) == before
    assert not (runtime_dir / OWNER_MARKER).exists()  # it named no file that is there


def test_a_marker_others_could_have_written_is_ignored(runtime_dir: Path) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(runtime_dir / "pcscd.comm"))
    sock.close()
    record_ownership(dead_pid(), runtime_dir)
    (runtime_dir / OWNER_MARKER).chmod(0o666)
    assert remove_stale_files(runtime_dir) == [runtime_dir / "pcscd.comm"]
    assert (runtime_dir / "pcscd.comm").exists()


def test_start_refuses_over_a_foreign_socket_and_starts_nothing(
    pcscd: PcscdManager, tmp_path: Path, runtime_dir: Path, foreign_socket: Path
) -> None:
    """With the session's pcscd stopped, so that only the socket stands in the way."""
    before = FileId.of(foreign_socket)
    pcscd.stop()
    try:
        manager = PcscdManager(tmp_path / "work", runtime_dir=runtime_dir)
        with pytest.raises(PcscdForeignFiles, match=r"pcscd\.comm exists and was not made") as no:
            manager.start()
        assert no.value.paths == [foreign_socket]
        assert running_pcscd_pids() == []
        assert FileId.of(foreign_socket) == before
    finally:
        pcscd.start()


SKIPPING_SUITE = textwrap.dedent(
    """
    from tests.pcsc_support import pcscd  # noqa: F401

    def test_one(pcscd):
        pass

    def test_two(pcscd):
        pass

    def test_without_pcsc():
        pass
    """
)


def run_suite(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    test_file = tmp_path / "test_needs_pcscd.py"
    test_file.write_text(SKIPPING_SUITE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(ROOT)
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-p", "no:cacheprovider"),
            *("--rootdir", str(tmp_path), "-c", str(ROOT / "pyproject.toml"), str(test_file)),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_pcscd_that_is_not_ours_is_reported_loudly_with_the_count(
    pcscd: PcscdManager, tmp_path: Path
) -> None:
    """A second pytest process finds our session pcscd running: to it, someone else's."""
    result = run_suite(tmp_path, ci=False)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "1 passed, 2 skipped" in out
    assert "2 PC/SC tests SKIPPED" in out
    assert f"another pcscd is already running (pid {pcscd.pid})" in out
    assert "PcscSkippedWarning" in out


def test_on_ci_a_pcscd_that_is_not_ours_fails_the_suite(
    pcscd: PcscdManager, tmp_path: Path
) -> None:
    result = run_suite(tmp_path, ci=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "cannot run the PC/SC tests on CI" in result.stdout
    assert "2 errors" in result.stdout and "SKIPPED" not in result.stdout
