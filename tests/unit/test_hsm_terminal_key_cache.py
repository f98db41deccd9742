"""The soft backend keeps derived terminal MAC keys in a bounded, expiring cache
(hsm.terminalkeys.TerminalKeyCache): a repeated terminal is derived once, the cache
never holds more than its capacity nor uses a key past its TTL, any change of the key
store empties it so that a MAC under a replaced master stops verifying at once, and
nothing about a cached key shows in a repr."""

from __future__ import annotations

from pathlib import Path

import pytest

from hsm import mac, soft_admin, terminalkeys, tr31
from hsm.errors import KeyNotFound, KeyTypeError
from hsm.keys import aes
from hsm.keystore import KeyEntry, KeyStore, KeyType
from hsm.protocol import KeyRef
from hsm.soft import SoftHsm
from hsm.tr31_header import KeyBlockHeader

T = 5.0
MASTER = KeyRef("terminal.mac.master")
OLD = bytes(range(64, 96))
NEW = bytes(range(96, 128))
KEK = bytes(range(32))
MESSAGE = b"POST\n/api/v1/tx\n1764380000\nnonce-nonce-nonce\n" + b"0" * 64


class FakeClock:
    """Virtual time (STYLE.md §8): advanced by the test only."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def store(master: bytes = OLD) -> KeyStore:
    return KeyStore(
        [
            soft_admin.entry("terminal.mac.master", KeyType.aes256, "terminal-mac-master", master),
            soft_admin.entry("kek.import", KeyType.aes256, "key-block-protection", KEK),
            soft_admin.entry("card.int.3des", KeyType.tdes2, "card-internal-auth", bytes(16)),
        ]
    )


def tag(master: bytes, terminal_id: str) -> bytes:
    return mac.hmac_sha256(terminalkeys.derive_terminal_mac_key(aes(master), terminal_id), MESSAGE)


async def verify(hsm: SoftHsm, terminal_id: str, presented: bytes, ref: KeyRef = MASTER) -> bool:
    return await hsm.verify_terminal_mac(ref, terminal_id, MESSAGE, presented, deadline_s=T)


async def test_a_repeated_terminal_is_derived_once_and_answers_as_before() -> None:
    hsm = SoftHsm(store())
    good = tag(OLD, "T1")
    assert await verify(hsm, "T1", good)
    assert await verify(hsm, "T1", good)
    assert not await verify(hsm, "T1", bytes(32))  # a hit still compares
    assert not await verify(hsm, "T2", good)  # another terminal, another key
    cache = hsm.terminal_keys
    assert (cache.hits, cache.misses, len(cache)) == (2, 2, 2)


async def test_the_cache_never_holds_more_than_its_capacity() -> None:
    hsm = SoftHsm(store(), terminal_key_cache_capacity=3)
    for n in range(10):
        assert await verify(hsm, f"T{n}", tag(OLD, f"T{n}"))
        assert len(hsm.terminal_keys) <= 3
    assert len(hsm.terminal_keys) == 3
    assert await verify(hsm, "T9", tag(OLD, "T9"))  # the newest are kept
    assert hsm.terminal_keys.hits == 1
    assert await verify(hsm, "T0", tag(OLD, "T0"))  # the oldest went first
    assert hsm.terminal_keys.misses == 11


async def test_capacity_zero_derives_on_every_call() -> None:
    hsm = SoftHsm(store(), terminal_key_cache_capacity=0)
    for _ in range(3):
        assert await verify(hsm, "T1", tag(OLD, "T1"))
    assert (hsm.terminal_keys.hits, hsm.terminal_keys.misses, len(hsm.terminal_keys)) == (0, 3, 0)


async def test_a_key_is_used_for_its_ttl_then_derived_again_and_expired_ones_are_swept() -> None:
    clock = FakeClock()
    hsm = SoftHsm(store(), terminal_key_cache_ttl_s=10.0, clock=clock)
    assert await verify(hsm, "T1", tag(OLD, "T1"))
    clock.now_s += 9.9
    assert await verify(hsm, "T1", tag(OLD, "T1"))
    assert hsm.terminal_keys.hits == 1
    clock.now_s += 0.1
    assert await verify(hsm, "T1", tag(OLD, "T1"))
    assert hsm.terminal_keys.misses == 2
    clock.now_s += 10.0
    assert await verify(hsm, "T2", tag(OLD, "T2"))  # T1 expired: swept as T2 arrives
    assert len(hsm.terminal_keys) == 1


async def test_a_new_master_version_takes_over_and_the_old_mac_fails_at_once() -> None:
    """`hsm import` of a new version into the store the backend serves (the only way a
    soft key store changes): the newest version is used from the next call on, and no
    key derived from the replaced master is used again."""
    keys = store()
    hsm = SoftHsm(keys)
    old_tag = tag(OLD, "T1")
    assert await verify(hsm, "T1", old_tag)
    header = KeyBlockHeader(version="D", key_usage="B0", algorithm="A", mode_of_use="X")
    block = tr31.wrap(aes(KEK), header, aes(NEW))
    soft_admin.import_key_block(
        keys,
        kek_label="kek.import",
        key_block=block,
        label="terminal.mac.master",
        version=2,
        usage="terminal-mac-master",
    )
    assert not await verify(hsm, "T1", old_tag)
    assert await verify(hsm, "T1", tag(NEW, "T1"))
    assert await verify(hsm, "T1", old_tag, KeyRef("terminal.mac.master", 1))  # named: still


async def test_any_change_of_the_store_empties_the_cache() -> None:
    """Even one that cannot be told from the cache key: entries without a check value
    (as tests.hsm_conformance makes them) and a store changed by someone else's `add`."""
    keys = KeyStore([KeyEntry("terminal.mac.master", 1, KeyType.aes256, "t", "", OLD)])
    hsm = SoftHsm(keys)
    assert await verify(hsm, "T1", tag(OLD, "T1"))
    assert len(hsm.terminal_keys) == 1
    keys.add(KeyEntry("other", 1, KeyType.hmac, "t", "", bytes(32)))
    assert await verify(hsm, "T1", tag(OLD, "T1"))
    assert (hsm.terminal_keys.misses, len(hsm.terminal_keys)) == (2, 1)


async def test_a_reinitialised_key_file_loads_as_a_new_backend_with_nothing_cached(
    tmp_path: Path,
) -> None:
    """`hsm init --force` writes new keys under the same labels and versions; whoever
    loads the file again (the engine at start, the simulators) builds a new SoftHsm,
    which derives afresh: the old master's MACs fail."""
    path, file_key = tmp_path / "keys.json", bytes(range(1, 33))
    store(OLD).save(path, file_key)
    before = SoftHsm(KeyStore.load(path, file_key))
    assert await verify(before, "T1", tag(OLD, "T1"))
    store(NEW).save(path, file_key)
    after = SoftHsm(KeyStore.load(path, file_key))
    assert not await verify(after, "T1", tag(OLD, "T1"))
    assert await verify(after, "T1", tag(NEW, "T1"))


async def test_a_refused_master_is_never_cached_and_is_named() -> None:
    hsm = SoftHsm(store())
    with pytest.raises(KeyNotFound, match=r"no key labelled 'terminal\.mac\.nope'"):
        await verify(hsm, "T1", bytes(32), KeyRef("terminal.mac.nope"))
    with pytest.raises(KeyTypeError, match=r"with key card\.int\.3des needs an AES key"):
        await verify(hsm, "T1", bytes(32), KeyRef("card.int.3des"))
    assert len(hsm.terminal_keys) == 0


async def test_no_repr_reaches_a_cached_key() -> None:
    hsm = SoftHsm(store())
    assert await verify(hsm, "T1", tag(OLD, "T1"))
    key = terminalkeys.derive_terminal_mac_key(aes(OLD), "T1").material
    for shown in (repr(hsm), str(hsm), repr(hsm.terminal_keys), repr(vars(hsm))):
        for secret in (key, OLD):
            assert secret.hex() not in shown.lower() and repr(secret) not in shown
    assert "1 of 4096 keys" in repr(hsm)


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="capacity"):
        terminalkeys.TerminalKeyCache(-1)
    with pytest.raises(ValueError, match="TTL"):
        terminalkeys.TerminalKeyCache(1, 0.0)
