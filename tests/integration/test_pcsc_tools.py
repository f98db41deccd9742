"""Outside clients of the virtual reader: OpenSC's `opensc-tool` and pcsc-tools'
`pcsc_scan` see the readers, the ATR and the SSSE application of a card served by
`simulators.vpicc`; `yikatong sim card insert|remove|status` and `sim pcscd
start|stop` run as subprocesses, as a developer would from a shell; a second pcscd is
refused politely.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from card.pcsc import PcscReader, list_readers
from card.ssse import SSSE_AID, CardSession
from simulators.pcscd import (
    PCSCD_SOCKET,
    PcscdBusy,
    PcscdInfo,
    PcscdManager,
    running_pcscd_pids,
    wait_pid_gone,
)
from simulators.population import Population
from tests.pcsc_support import SEED, InsertCard, person_card

TOOL_TIMEOUT_S = 20


def run(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, env=env, check=False
    )


def test_opensc_tool_reads_the_atr_and_selects_ssse(
    pcscd: PcscdManager, insert_card: InsertCard, population: Population, key_env: dict[str, str]
) -> None:
    card, _ = person_card(population, key_env, 4)
    insert_card(card)
    atr = run(["opensc-tool", "--reader", "0", "--atr"])
    assert atr.returncode == 0, atr.stderr
    assert atr.stdout.strip() == card.atr.hex(":")
    select = run(["opensc-tool", "--reader", "0", "--send-apdu", "00A404000F" + SSSE_AID.hex()])
    assert select.returncode == 0, select.stderr
    assert "Received (SW1=0x90, SW2=0x00)" in select.stdout
    unknown = run(["opensc-tool", "--reader", "0", "--send-apdu", "00A4040007A0000000031010"])
    assert "Received (SW1=0x6A, SW2=0x82)" in unknown.stdout


def test_pcsc_scan_lists_the_readers_and_the_inserted_card(
    pcscd: PcscdManager, insert_card: InsertCard, population: Population, key_env: dict[str, str]
) -> None:
    listed = run(["pcsc_scan", "-r"])
    assert listed.returncode == 0, listed.stderr
    assert f"0: {pcscd.readers[0]}" in listed.stdout
    assert f"1: {pcscd.readers[1]}" in listed.stdout
    card, _ = person_card(population, key_env, 4)
    insert_card(card, slot=1)
    scanned = run(["pcsc_scan", "-t", "1", "-n"])
    assert scanned.returncode == 0, scanned.stderr
    atr_line = "ATR: " + card.atr.hex(" ").upper()
    assert atr_line in scanned.stdout and "Card inserted" in scanned.stdout


def test_sim_card_insert_status_remove_as_subprocesses(
    pcscd: PcscdManager, tmp_path: Path, population: Population, key_env: dict[str, str]
) -> None:
    """Against the session's pcscd (not started by the CLI): the CLI finds the vpcd
    reader by name and its vpicc process joins pcscd's network namespace."""
    env = {**os.environ, **key_env}
    yikatong = [sys.executable, "-m", "engine"]
    common = ["--run-dir", str(tmp_path / "run")]
    person = ["--seed", str(SEED), "--persons", str(len(population.persons))]
    index = 7
    inserted = run(
        [*yikatong, "sim", "card", "insert", "--index", str(index), *person, *common], env
    )
    try:
        assert inserted.returncode == 0, inserted.stderr
        assert f"person {index}'s card inserted" in inserted.stdout
        with PcscReader(pcscd.readers[0]) as reader, CardSession(reader) as session:
            assert session.open().card_no == population.card(index).card_no
        again = run([*yikatong, "sim", "card", "insert", "--index", "8", *person, *common], env)
        assert again.returncode != 0 and "already holds person 7's card" in again.stderr
        status = run([*yikatong, "sim", "card", "status", *common], env)
        assert status.returncode == 0, status.stderr
        assert f"slot 0 ({pcscd.readers[0]}): card present; person {index}'s card" in status.stdout
    finally:
        removed = run([*yikatong, "sim", "card", "remove", *common], env)
    assert removed.returncode == 0, removed.stderr
    assert "card removed" in removed.stdout
    with PcscReader(pcscd.readers[0]) as reader:
        assert not reader.card_present()
    assert not (tmp_path / "run" / "card-slot0.json").exists()


def test_a_second_pcscd_is_refused_naming_the_running_ones_pid(
    pcscd: PcscdManager, tmp_path: Path
) -> None:
    with pytest.raises(PcscdBusy, match=f"pid {pcscd.pid}") as busy:
        PcscdManager(tmp_path / "second").start()
    assert busy.value.pid == pcscd.pid
    refused = run(
        [sys.executable, "-m", "engine", "sim", "pcscd", "start", "--run-dir", str(tmp_path)]
    )
    assert refused.returncode != 0
    assert f"another pcscd is already running (pid {pcscd.pid})" in refused.stderr


def test_sim_pcscd_start_stop_and_a_killed_pcscd_leaves_nothing_in_the_way(
    pcscd: PcscdManager, tmp_path: Path
) -> None:
    """`sim pcscd start` outlives its command and `stop` ends it; after a SIGKILL (which
    leaves /run/pcscd/pcscd.comm behind) the next start cleans up and succeeds."""
    cli = [sys.executable, "-m", "engine", "sim", "pcscd"]
    run_dir = ["--run-dir", str(tmp_path)]
    pcscd.stop()
    try:
        started = run([*cli, "start", *run_dir])
        assert started.returncode == 0, started.stderr
        info = PcscdInfo.load(tmp_path / "pcscd" / "pcscd.json")
        assert info is not None and info.readers == pcscd.readers
        assert set(info.readers) <= set(list_readers())
        stopped = run([*cli, "stop", *run_dir])
        assert stopped.returncode == 0 and f"pcscd {info.pid} stopped" in stopped.stdout
        assert running_pcscd_pids() == []
        killed = run([*cli, "start", *run_dir])
        assert killed.returncode == 0, killed.stderr
        info = PcscdInfo.load(tmp_path / "pcscd" / "pcscd.json")
        assert info is not None
        os.kill(info.pid, signal.SIGKILL)
        assert wait_pid_gone(info.pid, 5)
        assert PCSCD_SOCKET.exists()  # what a killed pcscd leaves
    finally:
        pcscd.start()
    assert list_readers()[:2] == list(pcscd.readers)
