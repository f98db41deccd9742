"""The PKCS#11 worker against a real SoftHSM2 token: every call from many concurrent
tasks runs on one thread with one login (SoftHSM2 would abort the process
otherwise), results match an independent software computation, deadlines and the
waiting bound hold, and a missing module, token or key and a wrong PIN each give
their own error. Wrong-PIN and bad-module cases run in a fresh process because
PKCS#11 login state belongs to the process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

from hsm.pkcs11_worker import (
    Pkcs11Busy,
    Pkcs11KeyNotFound,
    Pkcs11Timeout,
    Pkcs11Worker,
    WorkerState,
    find_key,
)

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "123456"
KEY = bytes(range(16))


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh SoftHSM2 token with an AES key 'cmac-key' imported; yields its label."""
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SOFTHSM2_CONF", str(conf))
        yield _init_token(conf)


def _init_token(conf: Path) -> str:
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            "yk-test",
            "--pin",
            PIN,
            "--so-pin",
            "654321",
        ],
        check=True,
        capture_output=True,
    )
    import pkcs11

    lib = pkcs11.lib(MODULE)
    with lib.get_token(token_label="yk-test").open(user_pin=PIN, rw=True) as session:
        session.create_object(
            {
                pkcs11.Attribute.CLASS: pkcs11.ObjectClass.SECRET_KEY,
                pkcs11.Attribute.KEY_TYPE: pkcs11.KeyType.AES,
                pkcs11.Attribute.VALUE: KEY,
                pkcs11.Attribute.LABEL: "cmac-key",
                pkcs11.Attribute.TOKEN: True,
                pkcs11.Attribute.SIGN: True,
                pkcs11.Attribute.SENSITIVE: True,
                pkcs11.Attribute.EXTRACTABLE: False,
            }
        )
    return "yk-test"


def software_cmac(data: bytes) -> bytes:
    mac = CMAC(algorithms.AES(KEY))
    mac.update(data)
    return mac.finalize()


async def test_concurrent_calls_run_on_one_thread_and_match_software(token: str) -> None:
    worker = Pkcs11Worker(MODULE, token, PIN, max_waiting=1000)
    await worker.start(deadline_s=10)
    threads: set[int] = set()

    def cmac(session: object, data: bytes) -> bytes:
        threads.add(threading.get_ident())
        key = find_key(session, "cmac-key")
        import pkcs11

        return bytes(key.sign(data, mechanism=pkcs11.Mechanism.AES_CMAC))

    try:
        inputs = [i.to_bytes(4, "big") * 8 for i in range(300)]
        macs = await asyncio.gather(
            *(worker.call(lambda s, d=d: cmac(s, d), deadline_s=10) for d in inputs)
        )
        assert macs == [software_cmac(d) for d in inputs]
        assert len(threads) == 1 and threading.get_ident() not in threads
        with pytest.raises(Pkcs11KeyNotFound, match="no key labelled 'absent'"):
            await worker.call(lambda s: find_key(s, "absent"), deadline_s=10)
    finally:
        await worker.close()
    assert worker.state is WorkerState.closed
    await worker.close()  # idempotent


async def test_deadline_and_waiting_bound(token: str) -> None:
    worker = Pkcs11Worker(MODULE, token, PIN, max_waiting=1)
    await worker.start(deadline_s=10)
    release = threading.Event()
    try:
        slow = asyncio.ensure_future(worker.call(lambda s: release.wait(5), deadline_s=0.2))
        await asyncio.sleep(0.05)
        with pytest.raises(Pkcs11Busy):
            await worker.call(lambda s: None, deadline_s=1)
        with pytest.raises(Pkcs11Timeout, match=r"exceeded 0\.2s"):
            await slow
    finally:
        release.set()
        await worker.close()


SCRIPT = """
import asyncio, sys
from hsm.pkcs11_worker import Pkcs11Worker
async def main():
    w = Pkcs11Worker(sys.argv[1], sys.argv[2], sys.argv[3], max_waiting=4)
    try:
        await w.start(deadline_s=10)
    except Exception as exc:
        print(type(exc).__name__ + ': ' + str(exc))
        return
    print('opened')
    await w.close()
asyncio.run(main())
"""


@pytest.mark.parametrize(
    ("module", "label", "pin", "expected"),
    [
        (
            MODULE,
            "yk-test",
            "999999",
            "Pkcs11PinError: user PIN refused by token 'yk-test' (PinIncorrect)",
        ),
        (MODULE, "no-such", PIN, "Pkcs11TokenError: no single token labelled 'no-such'"),
        (
            "/nonexistent/libpkcs11.so",
            "yk-test",
            PIN,
            "Pkcs11ModuleError: cannot load PKCS#11 module",
        ),
        (MODULE, "yk-test", PIN, "opened"),
    ],
)
def test_setup_errors_are_precise(
    token: str, module: str, label: str, pin: str, expected: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, module, label, pin],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout.strip().startswith(expected), result.stdout + result.stderr
    assert pin not in result.stdout or pin == PIN
