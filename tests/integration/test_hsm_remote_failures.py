"""The remote backend against the HSM simulator over real TCP tells an outage from a
misconfiguration (REVIEW.md §5): a stopped simulator is `HsmUnavailable`, which the
engine answers 503 hsm_unavailable with Retry-After; a simulator whose key file lacks
the terminal MAC master answers error 10, which comes back as `KeyNotFound` and is
answered 503 hsm_misconfigured without Retry-After, on every retry."""

from __future__ import annotations

import pytest

from engine.hsm_runtime import HsmFailure, HsmFailureLog, answer_for, classify
from hsm.errors import HsmMisconfigured, HsmUnavailable, KeyNotFound
from hsm.keystore import KeyStore
from hsm.protocol import KeyRef
from hsm.remote import RemoteHsm
from hsm.soft import SoftHsm
from simulators.hsm_server import serve
from terminals.results import ResultCode
from tests.hsm_conformance import conformance_key_entries

T = 2.0
MASTER = KeyRef("terminal.mac.master")


async def test_a_stopped_simulator_is_unavailable_and_answered_try_again() -> None:
    server = await serve(SoftHsm(KeyStore(conformance_key_entries())), "127.0.0.1", 0)
    client = RemoteHsm("127.0.0.1", server.port, pool_size=2)
    try:
        assert not await client.verify_terminal_mac(MASTER, "T1", b"m", bytes(32), deadline_s=T)
        await server.abort()
        with pytest.raises(HsmUnavailable) as raised:
            await client.verify_terminal_mac(MASTER, "T1", b"m", bytes(32), deadline_s=T)
    finally:
        await client.close()
        await server.close()
    answer = answer_for(raised.value, failures=HsmFailureLog())
    assert (answer.code, answer.status, answer.retry_after) == (
        ResultCode.hsm_unavailable,
        503,
        True,
    )


async def test_a_simulator_without_the_master_is_misconfigured_on_every_retry() -> None:
    without = [e for e in conformance_key_entries() if e.label != MASTER.label]
    server = await serve(SoftHsm(KeyStore(without)), "127.0.0.1", 0)
    client = RemoteHsm("127.0.0.1", server.port, pool_size=2)
    try:
        for _ in range(3):
            with pytest.raises(KeyNotFound, match=r"terminal\.mac\.master") as raised:
                await client.verify_terminal_mac(MASTER, "T1", b"m", bytes(32), deadline_s=T)
            assert isinstance(raised.value, HsmMisconfigured)
            assert classify(raised.value) is HsmFailure.misconfigured
    finally:
        await client.close()
        await server.close()
    answer = answer_for(raised.value, failures=HsmFailureLog())
    assert (answer.code, answer.status, answer.retry_after) == (
        ResultCode.hsm_misconfigured,
        503,
        False,
    )
