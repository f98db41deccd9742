"""The software backend: the `Hsm` protocol over `cryptography`, with keys from the
encrypted key file (hsm.keystore) held in this process only.

Fit for development, tests and the simulators; in production the same protocol is
served by a PKCS#11 token or a network HSM. Operations are microseconds of CPU, so
they run inline on the event loop; the deadline is accepted for the protocol's sake.

Refusals are the `hsm.errors` classes, named after the key: an unknown label or
version is `KeyNotFound`, a key of the wrong type `KeyTypeError` (misconfiguration,
hsm.errors); a mismatch is `False` from the verify operations.

Terminal MAC keys are derived from the master once and kept in a bounded, expiring
`hsm.terminalkeys.TerminalKeyCache` (capacity and TTL: the constants there, or the
constructor's arguments). The store only ever changes by `KeyStore.add` (a new key or
version imported into this store); any change empties the cache before the next
verification, and a store loaded from a changed key file is a new store and a new
backend, with an empty cache.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hsm import cardauth, emv, mac, pinblock
from hsm.errors import DataLengthError, KeyTypeError, VerificationFailed
from hsm.keys import Algorithm, SecretKey, aes, hmac_key, require, sm4, tdes
from hsm.keystore import KeyEntry, KeyStore, KeyStoreError, KeyType
from hsm.protocol import KeyInfo, KeyNotFound, KeyRef, MacAlgorithm
from hsm.terminalkeys import (
    TERMINAL_KEY_CACHE_CAPACITY,
    TERMINAL_KEY_CACHE_TTL_S,
    TerminalKeyCache,
)

RANDOM_BYTES_MAX = 4096

_SECRET = {
    KeyType.tdes2: tdes,
    KeyType.tdes3: tdes,
    KeyType.aes128: aes,
    KeyType.aes256: aes,
    KeyType.sm4: sm4,
    KeyType.hmac: hmac_key,
}


class SoftHsm:
    backend = "soft"

    def __init__(
        self,
        store: KeyStore,
        *,
        terminal_key_cache_capacity: int = TERMINAL_KEY_CACHE_CAPACITY,
        terminal_key_cache_ttl_s: float = TERMINAL_KEY_CACHE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._terminal_keys = TerminalKeyCache(
            terminal_key_cache_capacity, terminal_key_cache_ttl_s, clock
        )
        self._cached_generation = store.generation

    def __repr__(self) -> str:
        return f"SoftHsm({self._store!r}, {self._terminal_keys!r})"

    @property
    def terminal_keys(self) -> TerminalKeyCache:
        """The terminal key cache, for its counters (tests, metrics)."""
        return self._terminal_keys

    def _entry(self, ref: KeyRef) -> KeyEntry:
        try:
            return self._store.get(ref.label, ref.version)
        except KeyStoreError as exc:
            raise KeyNotFound(str(exc)) from None

    def _secret(self, ref: KeyRef) -> SecretKey:
        return self._secret_of(self._entry(ref), ref)

    @staticmethod
    def _secret_of(entry: KeyEntry, ref: KeyRef) -> SecretKey:
        make = _SECRET.get(entry.key_type)
        if make is None:
            raise KeyTypeError(f"key {ref} is a {entry.key_type} key, not a secret key")
        return make(entry.material)

    def _terminal_key(self, master: KeyRef, terminal_id: str) -> SecretKey:
        entry = self._entry(master)  # resolves "newest" and refuses an unknown key
        if self._store.generation != self._cached_generation:
            self._terminal_keys.clear()
            self._cached_generation = self._store.generation

        def master_key() -> SecretKey:
            secret = self._secret_of(entry, master)
            require(
                secret, Algorithm.AES, operation=f"terminal MAC key derivation with key {master}"
            )
            return secret

        master_id = (entry.label, entry.version, entry.check_value)
        return self._terminal_keys.key_for(master_id, terminal_id, master_key)

    def _private(self, ref: KeyRef) -> ec.EllipticCurvePrivateKey:
        entry = self._entry(ref)
        if entry.key_type is not KeyType.ec_p256:
            raise KeyTypeError(f"key {ref} is a {entry.key_type} key, not an EC-P256 key")
        key = serialization.load_der_private_key(entry.material, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise KeyTypeError(f"key {ref} does not hold an EC private key")
        return key

    def _ac_session_key(self, issuer_master: KeyRef, pan: str, psn: str, atc: bytes) -> SecretKey:
        """EMV option A ICC master key, then the AC session key for this ATC."""
        icc_master = emv.derive_icc_master_key_a(self._secret(issuer_master), pan, psn)
        return emv.derive_ac_session_key(icc_master, atc)

    async def random_bytes(self, n: int, *, deadline_s: float) -> bytes:
        if not 1 <= n <= RANDOM_BYTES_MAX:
            raise DataLengthError(f"random_bytes: n must be 1..{RANDOM_BYTES_MAX}, got {n}")
        return secrets.token_bytes(n)

    async def verify_card_cryptogram(
        self,
        master: KeyRef,
        card_sn: bytes,
        process_factor: bytes,
        challenge: bytes,
        cryptogram: bytes,
        *,
        deadline_s: float,
    ) -> bool:
        card_key = cardauth.derive_card_key(self._secret(master), card_sn)
        try:
            cardauth.verify_auth_cryptogram(card_key, process_factor, challenge, cryptogram)
        except VerificationFailed:
            return False
        return True

    async def external_auth_cryptogram(
        self,
        master: KeyRef,
        card_sn: bytes,
        process_factor: bytes,
        challenge: bytes,
        *,
        deadline_s: float,
    ) -> bytes:
        card_key = cardauth.derive_card_key(self._secret(master), card_sn)
        return cardauth.external_auth_cryptogram(card_key, process_factor, challenge)

    async def mac_generate(
        self, key: KeyRef, algorithm: MacAlgorithm, data: bytes, *, deadline_s: float
    ) -> bytes:
        secret = self._secret(key)
        operation = f"{algorithm} with key {key}"
        if algorithm is MacAlgorithm.hmac_sha256:
            require(secret, Algorithm.HMAC, operation=operation)
            return mac.hmac_sha256(secret, data)
        if algorithm is MacAlgorithm.iso9797_alg3:
            return mac.iso9797_mac3(secret, data)
        wanted = Algorithm.AES if algorithm is MacAlgorithm.aes_cmac else Algorithm.TDES
        require(secret, wanted, operation=operation)
        return mac.cmac(secret, data)

    async def mac_verify(
        self,
        key: KeyRef,
        algorithm: MacAlgorithm,
        data: bytes,
        presented: bytes,
        *,
        deadline_s: float,
    ) -> bool:
        computed = await self.mac_generate(key, algorithm, data, deadline_s=deadline_s)
        try:
            mac.verify_equal(computed, presented, what=str(algorithm))
        except VerificationFailed:
            return False
        return True

    async def verify_terminal_mac(
        self,
        master: KeyRef,
        terminal_id: str,
        message: bytes,
        presented: bytes,
        *,
        deadline_s: float,
    ) -> bool:
        key = self._terminal_key(master, terminal_id)
        try:
            mac.verify_equal(mac.hmac_sha256(key, message), presented, what="terminal MAC")
        except VerificationFailed:
            return False
        return True

    async def verify_arqc(
        self,
        issuer_master: KeyRef,
        pan: str,
        psn: str,
        atc: bytes,
        data: bytes,
        arqc: bytes,
        *,
        deadline_s: float,
    ) -> bool:
        session = self._ac_session_key(issuer_master, pan, psn, atc)
        try:
            emv.verify_arqc(session, data, arqc)
        except VerificationFailed:
            return False
        return True

    async def arpc_method_1(
        self,
        issuer_master: KeyRef,
        pan: str,
        psn: str,
        atc: bytes,
        arqc: bytes,
        arc: bytes,
        *,
        deadline_s: float,
    ) -> bytes:
        session = self._ac_session_key(issuer_master, pan, psn, atc)
        return emv.arpc_method_1(session, arqc, arc)

    async def arpc_method_2(
        self,
        issuer_master: KeyRef,
        pan: str,
        psn: str,
        atc: bytes,
        arqc: bytes,
        csu: bytes,
        proprietary_data: bytes,
        *,
        deadline_s: float,
    ) -> bytes:
        session = self._ac_session_key(issuer_master, pan, psn, atc)
        return emv.arpc_method_2(session, arqc, csu, proprietary_data)

    async def translate_pin_format4(
        self, from_key: KeyRef, to_key: KeyRef, block: bytes, pan: str, *, deadline_s: float
    ) -> bytes:
        return pinblock.translate_format4(
            block, self._secret(from_key), self._secret(to_key), pan=pan
        )

    async def translate_pin_format0(
        self, from_key: KeyRef, to_key: KeyRef, block: bytes, pan: str, *, deadline_s: float
    ) -> bytes:
        return pinblock.translate_format0(
            block, self._secret(from_key), self._secret(to_key), pan=pan
        )

    async def sign(self, key: KeyRef, data: bytes, *, deadline_s: float) -> bytes:
        return self._private(key).sign(data, ec.ECDSA(hashes.SHA256()))

    async def verify_signature(
        self, key: KeyRef, data: bytes, signature: bytes, *, deadline_s: float
    ) -> bool:
        try:
            self._private(key).public_key().verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True

    async def list_keys(self, *, deadline_s: float) -> list[KeyInfo]:
        return [
            KeyInfo(e.label, e.version, e.key_type.value, e.usage, e.check_value)
            for e in self._store.entries()
        ]

    async def close(self) -> None:
        return None
