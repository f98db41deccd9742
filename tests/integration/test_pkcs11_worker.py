"""The PKCS#11 worker against a real SoftHSM2 token: every call from many concurrent
tasks runs on one thread with one login (SoftHSM2 would abort the process
otherwise), results match an independent software computation, deadlines and the
waiting bound hold, queued calls run in order in batches and are skipped once their
deadline has passed, the raw function-list calls (hsm.pkcs11_raw) hit the right entry
points and map the token's errors, and a missing module, token or key and a wrong PIN
each give their own error. Wrong-PIN and bad-module cases run in a fresh process because
PKCS#11 login state belongs to the process."""

from __future__ import annotations

import asyncio
import ctypes
import math
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

from hsm.pkcs11_raw import _SIGNATURES
from hsm.pkcs11_worker import (
    BATCH_MAX,
    Pkcs11Busy,
    Pkcs11Error,
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


async def test_calls_queued_behind_a_busy_thread_run_in_batches_and_in_order(token: str) -> None:
    """While the token thread is held, 40 calls queue up; released, the thread runs
    them in submission order, BATCH_MAX at a time, and hands each batch back in one
    event-loop callback (the wake-ups the batching saves)."""
    worker = Pkcs11Worker(MODULE, token, PIN, max_waiting=100)
    await worker.start(deadline_s=10)
    release = threading.Event()
    order: list[int] = []
    try:
        held = asyncio.ensure_future(worker.call(lambda s: release.wait(5), deadline_s=10))
        await asyncio.sleep(0.05)
        calls, batches = worker.calls, worker.batches
        queued = [
            asyncio.ensure_future(worker.call(lambda s, i=i: order.append(i) or i, deadline_s=10))
            for i in range(40)
        ]
        await asyncio.sleep(0)
        release.set()
        assert await held is True
        assert await asyncio.gather(*queued) == list(range(40))
        assert order == list(range(40))
        assert worker.calls - calls == 1 + 40
        assert worker.batches - batches == 1 + math.ceil(40 / BATCH_MAX)
    finally:
        release.set()
        await worker.close()


async def test_a_call_whose_deadline_passes_in_the_queue_is_not_run(token: str) -> None:
    worker = Pkcs11Worker(MODULE, token, PIN, max_waiting=10)
    await worker.start(deadline_s=10)
    release = threading.Event()
    ran: list[str] = []
    try:
        held = asyncio.ensure_future(worker.call(lambda s: release.wait(5), deadline_s=10))
        await asyncio.sleep(0.05)
        late = asyncio.ensure_future(worker.call(lambda s: ran.append("late"), deadline_s=0.05))
        with pytest.raises(Pkcs11Timeout, match=r"exceeded 0\.05s"):
            await late
        release.set()
        await held
        assert await worker.call(lambda s: "after", deadline_s=10) == "after"
        assert ran == []
    finally:
        release.set()
        await worker.close()


async def test_raw_function_list_matches_the_modules_exported_entry_points(token: str) -> None:
    """hsm.pkcs11_raw reads CK_FUNCTION_LIST by position; SoftHSM2 also exports every
    function by name, so each position must hold the function of that name."""
    worker = Pkcs11Worker(MODULE, token, PIN, max_waiting=10)
    await worker.start(deadline_s=10)
    try:
        library = ctypes.CDLL(MODULE)
        for name in _SIGNATURES:
            exported = ctypes.cast(getattr(library, name), ctypes.c_void_p).value
            assert worker.raw.function_address(name) == exported, name
    finally:
        await worker.close()
    with pytest.raises(Pkcs11Error, match="raw session of a worker that is closed"):
        worker.raw  # noqa: B018


async def test_raw_calls_answer_as_the_token_does_and_map_its_errors(token: str) -> None:
    worker = Pkcs11Worker(MODULE, token, PIN, max_waiting=10)
    await worker.start(deadline_s=10)
    raw = worker.raw
    data = bytes(range(48))

    def cmac_and_errors(session: object) -> tuple[bytes, bool, str, str]:
        import pkcs11

        key = find_key(session, "cmac-key").handle
        tag = raw.sign(key, pkcs11.Mechanism.AES_CMAC, data)
        # C_Verify with CKM_AES_CMAC: a wrong tag is False, not an exception
        wrong = raw.verify(key, pkcs11.Mechanism.AES_CMAC, data, bytes(16))
        try:
            raw.encrypt(0x7FFF_FFFF, pkcs11.Mechanism.AES_ECB, bytes(16))
        except pkcs11.exceptions.PKCS11Error as exc:
            bad_handle = type(exc).__name__
        try:
            raw.sign(key, pkcs11.Mechanism.DES3_CMAC, data)
        except pkcs11.exceptions.PKCS11Error as exc:
            bad_type = type(exc).__name__
        return tag, wrong, bad_handle, bad_type

    try:
        tag, wrong, bad_handle, bad_type = await worker.call(cmac_and_errors, deadline_s=10)
    finally:
        await worker.close()
    assert tag == software_cmac(data)
    assert wrong is False
    # SoftHSM2's return codes, as python-pkcs11 names them (hsm.pkcs11 maps these)
    assert (bad_handle, bad_type) == ("ObjectHandleInvalid", "KeyTypeInconsistent")


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
