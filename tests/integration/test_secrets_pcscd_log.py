"""`yikatong sim pcscd start --debug` logs every APDU, but never a PIN: the real
pcscd -d -a writes through our `mask-log` filter into a log created 0600, and the
data of VERIFY and CHANGE PIN (BCD-packed digits, card/ssse.py `pin_bcd`) is masked
while every other APDU stays readable. Neither pcscd nor the filter inherits a secret.
The card is a real virtual card in the real pcscd; the PINs travel in real APDUs.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from card.pcsc import PcscReader
from card.ssse import CardError, CardSession, pin_bcd
from hsm.secret_guard import is_secret_name
from simulators.pcscd import PcscdInfo, PcscdManager, mask_pin_apdu, pid_alive
from simulators.population import Population
from simulators.vpicc import Vpicc
from tests.pcsc_support import person_card

SECRETS = {"YIKATONG_HSM_MASTER_KEY": "5A" * 32, "READER_ADMIN_PASSWORD": "pw-log-test-7c1e"}
NEW_PIN, WRONG_PIN = "13579", "975318"


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        (b"00000003 APDU: 00 20 00 00 03 16 30 52 \n", b"00000003 APDU: 00 20 00 00 [PIN data masked]\n"),
        (b"00000003 APDU: 80 5E 01 00 07 16 30 52 FF 13 57 9F \n", b"00000003 APDU: 80 5E 01 00 [PIN data masked]\n"),
        (b"00000002 APDU: 00 20 00 80 08 24 12 34 FF FF FF FF FF\n", b"00000002 APDU: 00 20 00 80 [PIN data masked]\n"),
        (b"00000002 APDU: 00 24 00 01 06 11 22 33 44 55 66\n", b"00000002 APDU: 00 24 00 01 [PIN data masked]\n"),
    ],
)  # fmt: skip
def test_pin_commands_lose_their_data_and_its_length(line: bytes, masked: bytes) -> None:
    assert mask_pin_apdu(line) == masked


@pytest.mark.parametrize(
    "line",
    [
        b"00000005 APDU: 00 A4 04 00 0F 73 78 31 2E 73 68 2E C9 E7 BB E1 B1 A3 D5 CF 00 \n",
        b"00000002 APDU: 00 20 00 00 \n",  # VERIFY without data: the try counter query
        b"00000131 SW: 90 00 \n",
        b"00000003 winscard.c:1596:SCardTransmit() Send Protocol: T=1\n",
    ],
)
def test_other_lines_are_left_as_pcscd_wrote_them(line: bytes) -> None:
    assert mask_pin_apdu(line) == line


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", "sim", "pcscd", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_debug_log_of_sim_pcscd_is_0600_and_holds_no_pin(
    pcscd: PcscdManager, tmp_path: Path, population: Population, key_env: dict[str, str]
) -> None:
    index = 5
    pin = population.card(index).pin
    card, _ = person_card(population, key_env, index)
    env = {**os.environ, **SECRETS}
    run_dir = ["--run-dir", str(tmp_path)]
    pcscd.stop()
    try:
        started = cli("start", "--debug", *run_dir, env=env)
        assert started.returncode == 0, started.stderr
        info = PcscdInfo.load(tmp_path / "pcscd" / "pcscd.json")
        assert info is not None and info.log_filter_pid is not None
        for pid in (info.pid, info.log_filter_pid):
            raw = Path(f"/proc/{pid}/environ").read_bytes()
            names = {e.split(b"=", 1)[0].decode() for e in raw.split(b"\0") if e}
            assert not any(is_secret_name(n) for n in names)
            assert not any(v.encode() in raw for v in SECRETS.values())
        vpicc = Vpicc(card, port=info.port)
        vpicc.start()
        try:
            with PcscReader(info.readers[0]) as reader:
                assert reader.wait_for_card(5)
                with CardSession(reader) as session:
                    session.open()
                    session.verify_pin(pin)
                    with pytest.raises(CardError):
                        session.verify_pin(WRONG_PIN)
                    session.change_pin(pin, NEW_PIN)
                    session.verify_pin(NEW_PIN)
        finally:
            vpicc.stop()
        stopped = cli("stop", *run_dir, env=env)
        assert stopped.returncode == 0, stopped.stderr
        assert not pid_alive(info.log_filter_pid)  # the filter ended: the log is complete
    finally:
        pcscd.start()
    log_path = tmp_path / "pcscd" / "pcscd.log"
    assert stat.S_IMODE(log_path.stat().st_mode) == 0o600
    text = log_path.read_text()
    assert "APDU: 00 A4 04 00" in text  # a debug log: APDUs are there
    assert text.count("APDU: 00 20 00 00 [PIN data masked]") == 3
    assert text.count("APDU: 80 5E 01 00 [PIN data masked]") == 1
    for digits in (pin, NEW_PIN, WRONG_PIN):  # as pcscd writes APDU bytes: "16 30 52"
        assert pin_bcd(digits).hex(" ").upper() not in text
