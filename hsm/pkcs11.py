"""`Pkcs11Hsm`: the `Hsm` protocol (DESIGN.md §5) against a PKCS#11 token, with the
semantics of the reference backend (hsm.soft); SoftHSM2 in tests.

Invariants:
- no key leaves the token in clear: keys live there as objects named by label and
  version (hsm.pkcs11_keys), SENSITIVE and not EXTRACTABLE; keys for a card, a terminal
  or a transaction are derived inside the token from the master key object and
  destroyed after the call (hsm.pkcs11_derive); only inputs, results and check values
  cross the PKCS#11 boundary;
- every PKCS#11 call goes through one `Pkcs11Worker` (one thread, one login,
  TOOLCHAIN.md §2.3) with the caller's deadline; a late or unreachable token is
  `HsmUnavailable`, and token errors map to `hsm.errors` classes naming the operation
  and key, never a value, by CKR_* family (hsm.pkcs11_errors): device, session
  and login errors are `HsmUnavailable`; key type, length, usage (CKA_SIGN, CKA_DERIVE
  ... false), mechanism and template errors are misconfiguration (`HsmMisconfigured`
  classes), which no retry clears;
- an operation is one worker call: the key is looked up in the handle cache (a session
  copy of the stored key, with its type known: hsm.pkcs11_keys), then the module's
  functions are called directly on handles (hsm.pkcs11_raw), one PKCS#11 call per
  step; python-pkcs11 objects serve only the cold paths (login, lookup, listing,
  import);
- verify operations compare in constant time in Python over the value the token
  computed and answer `False` on a mismatch, as hsm.soft does.

Per operation (inside the token unless said otherwise):
    random                 C_GenerateRandom
    card cryptograms       card key and process key by CKM_DES3_ECB_ENCRYPT_DATA, then
                           CKM_DES3_ECB over the challenge
    HMAC-SHA256            CKM_SHA256_HMAC with a CKK_GENERIC_SECRET key
    AES-CMAC / TDES-CMAC   CKM_AES_CMAC / CKM_DES3_CMAC
    ISO 9797-1 MAC 3, ARQC composed from CKM_DES3_CBC and CKM_DES3_ECB (see below)
    ARPC method 1          session key derived as for the ARQC, then CKM_DES3_ECB
    terminal MAC           CKM_AES_ECB_ENCRYPT_DATA into a generic secret, then HMAC
    PIN translation        CKM_DES3_ECB decrypt, validate on the host, CKM_DES3_ECB
                           encrypt, in one worker call (see below)
    sign / verify          CKM_ECDSA over a SHA-256 digest computed on the host; the raw
                           r||s is converted to and from DER, as hsm.soft returns
    list_keys              check values computed by the token (hsm.pkcs11_keys)

What SoftHSM2 2.6.1 lacks and what this backend does about it:
    SM4 (no CKK_SM4, no CKM_SM4_ECB): SM4 keys cannot be put on the token
        (`import_test_keys` refuses them with AlgorithmUnavailable); there is no
        software fallback. A GM/T-capable HSM would need vendor constants here.
    ISO 9797-1 MAC algorithm 3 (no retail-MAC mechanism, no single DES): composed, with
        the weaknesses hsm.pkcs11_derive describes, only when the backend is built with
        `allow_composed_retail_mac=True` (tests, simulators); otherwise the MAC and the
        ARQC are refused with AlgorithmUnavailable. Real HSMs offer a vendor mechanism.
    PIN translation (no translate mechanism): the clear PIN block passes through host
        memory between the decrypt and the encrypt, inside one worker call; it is
        validated (no decryption oracle) and dropped at once, but Python cannot zero
        immutable bytes. A production token's vendor PIN-translate mechanism keeps it
        inside.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable
from typing import Any, TypeVar

import pkcs11.exceptions as px
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from pkcs11 import Mechanism

from hsm import cardauth, pinblock
from hsm import pkcs11_derive as derive
from hsm import pkcs11_keys as keys
from hsm.errors import AlgorithmUnavailable, DataLengthError, VerificationFailed
from hsm.keystore import KeyEntry
from hsm.mac import verify_equal
from hsm.pkcs11_errors import hsm_error
from hsm.pkcs11_raw import RawSession
from hsm.pkcs11_worker import Pkcs11Error, Pkcs11KeyNotFound, Pkcs11Worker
from hsm.protocol import HsmUnavailable, KeyInfo, KeyNotFound, KeyRef, MacAlgorithm
from hsm.soft import RANDOM_BYTES_MAX

T = TypeVar("T")
EC_COORDINATE_BYTES = 32


def _matches(computed: bytes, presented: bytes, what: str) -> bool:
    try:
        verify_equal(computed, presented, what=what)
    except VerificationFailed:
        return False
    return True


class Pkcs11Hsm:
    backend = "pkcs11"

    def __init__(self, worker: Pkcs11Worker, *, allow_composed_retail_mac: bool = False) -> None:
        """`worker` must be started. `allow_composed_retail_mac`: see the module docstring."""
        self._worker = worker
        self._composed_retail_mac = allow_composed_retail_mac

    def __repr__(self) -> str:
        return f"Pkcs11Hsm({self._worker!r})"

    @classmethod
    async def open(
        cls,
        module_path: str,
        token_label: str,
        user_pin: str,
        *,
        max_waiting: int,
        deadline_s: float,
        allow_composed_retail_mac: bool = False,
    ) -> Pkcs11Hsm:
        """Start a worker (load the module, log in) and wrap it. Setup errors keep the
        worker's precise classes (Pkcs11ModuleError, Pkcs11TokenError, Pkcs11PinError)."""
        worker = Pkcs11Worker(module_path, token_label, user_pin, max_waiting=max_waiting)
        try:
            await worker.start(deadline_s=deadline_s)
        except BaseException:
            await worker.close()
            raise
        return cls(worker, allow_composed_retail_mac=allow_composed_retail_mac)

    async def _run(self, what: str, fn: Callable[[Any, RawSession], T], deadline_s: float) -> T:
        """`fn(session, raw)` on the token thread: python-pkcs11's session for lookups,
        the raw function list (hsm.pkcs11_raw) for the operations."""
        try:
            raw = self._worker.raw

            def guarded(session: Any) -> T:
                try:
                    return fn(session, raw)
                except (px.KeyHandleInvalid, px.ObjectHandleInvalid):
                    # A cached handle outlived its object: look keys up afresh next
                    # time, so that the HsmUnavailable this becomes clears on a retry.
                    keys.forget_handles()
                    raise

            return await self._worker.call(guarded, deadline_s=deadline_s)
        except Pkcs11KeyNotFound as exc:  # hsm.pkcs11_worker.find_key: not an outage
            raise KeyNotFound(f"{what}: {exc}") from exc
        except Pkcs11Error as exc:  # timeout, busy, worker not open
            raise HsmUnavailable(f"{what}: {exc}") from exc
        except px.PKCS11Error as exc:
            raise hsm_error(exc, what) from exc

    def _require_composed_retail_mac(self, what: str) -> None:
        if not self._composed_retail_mac:
            raise AlgorithmUnavailable(
                f"{what}: the token has no ISO 9797-1 MAC algorithm 3 mechanism (retail MAC; "
                "CKM_DES3_MAC_GENERAL is refused) and the composed form is not enabled "
                "(allow_composed_retail_mac)"
            )

    async def random_bytes(self, n: int, *, deadline_s: float) -> bytes:
        if not 1 <= n <= RANDOM_BYTES_MAX:
            raise DataLengthError(f"random_bytes: n must be 1..{RANDOM_BYTES_MAX}, got {n}")
        return await self._run("random", lambda _, raw: raw.generate_random(n), deadline_s)

    async def _card_cryptogram(
        self, master: KeyRef, card_sn: bytes, factor: bytes, challenge: bytes, deadline_s: float
    ) -> bytes:
        def run(session: Any, raw: RawSession) -> bytes:
            key = keys.find_key(session, master)
            # SM4 is named for the message's sake: the token cannot hold SM4 keys.
            keys.require(key, master, keys.TDES, "SM4", operation="card key diversification")
            return derive.card_auth_cryptogram(raw, key.handle, card_sn, factor, challenge)

        return await self._run(f"card cryptogram with key {master}", run, deadline_s)

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
        derive.exact(cryptogram, cardauth.CRYPTOGRAM_BYTES, "cryptogram")
        computed = await self._card_cryptogram(
            master, card_sn, process_factor, challenge, deadline_s
        )
        return _matches(computed, cryptogram, "card cryptogram")

    async def external_auth_cryptogram(
        self,
        master: KeyRef,
        card_sn: bytes,
        process_factor: bytes,
        challenge: bytes,
        *,
        deadline_s: float,
    ) -> bytes:
        return await self._card_cryptogram(master, card_sn, process_factor, challenge, deadline_s)

    async def mac_generate(
        self, key: KeyRef, algorithm: MacAlgorithm, data: bytes, *, deadline_s: float
    ) -> bytes:
        operation = f"{algorithm}"
        if algorithm is MacAlgorithm.iso9797_alg3:
            self._require_composed_retail_mac(f"{algorithm} with key {key}")
        message = bytes(data)

        def run(session: Any, raw: RawSession) -> bytes:
            obj = keys.find_key(session, key)
            if algorithm is MacAlgorithm.hmac_sha256:
                keys.require(obj, key, keys.HMAC, operation=operation)
                return raw.sign(obj.handle, Mechanism.SHA256_HMAC, message)
            if algorithm is MacAlgorithm.aes_cmac:
                keys.require(obj, key, keys.AES, operation=operation)
                return raw.sign(obj.handle, Mechanism.AES_CMAC, message)
            if algorithm is MacAlgorithm.tdes_cmac:
                keys.require(obj, key, keys.TDES, operation=operation)
                return raw.sign(obj.handle, Mechanism.DES3_CMAC, message)
            keys.require_double_length_tdes(obj, key, operation=operation)
            companion = keys.find_companion(session, obj, key)
            return derive.retail_mac(raw, companion.handle, obj.handle, message)

        return await self._run(f"{algorithm} with key {key}", run, deadline_s)

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
        return _matches(computed, presented, str(algorithm))

    async def verify_terminal_mac(
        self,
        master: KeyRef,
        terminal_id: str,
        message: bytes,
        presented: bytes,
        *,
        deadline_s: float,
    ) -> bool:
        def run(session: Any, raw: RawSession) -> bytes:
            obj = keys.find_key(session, master)
            keys.require(obj, master, keys.AES, operation="terminal MAC key derivation")
            return derive.terminal_hmac(raw, obj.handle, terminal_id, message)

        computed = await self._run(f"terminal MAC with key {master}", run, deadline_s)
        return _matches(computed, presented, "terminal MAC")

    async def _emv(
        self,
        issuer_master: KeyRef,
        what: str,
        fn: Callable[[RawSession, int], bytes],
        deadline_s: float,
    ) -> bytes:
        def run(session: Any, raw: RawSession) -> bytes:
            obj = keys.find_key(session, issuer_master)
            keys.require_double_length_tdes(obj, issuer_master, operation=what)
            return fn(raw, obj.handle)

        return await self._run(f"{what} with key {issuer_master}", run, deadline_s)

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
        self._require_composed_retail_mac(f"ARQC with key {issuer_master}")
        derive.exact(arqc, derive.AC_BYTES, "ARQC")
        computed = await self._emv(
            issuer_master,
            "ICC master key derivation",
            lambda raw, imk: derive.arqc(raw, imk, pan, psn, atc, data),
            deadline_s,
        )
        return _matches(computed, arqc, "ARQC")

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
        return await self._emv(
            issuer_master,
            "ICC master key derivation",
            lambda raw, imk: derive.arpc_method_1(raw, imk, pan, psn, atc, arqc, arc),
            deadline_s,
        )

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
        self._require_composed_retail_mac(f"ARPC method 2 with key {issuer_master}")
        return await self._emv(
            issuer_master,
            "ICC master key derivation",
            lambda raw, imk: derive.arpc_method_2(
                raw, imk, pan, psn, atc, arqc, csu, proprietary_data
            ),
            deadline_s,
        )

    async def translate_pin_format4(
        self, from_key: KeyRef, to_key: KeyRef, block: bytes, pan: str, *, deadline_s: float
    ) -> bytes:
        """AES_ECB inside the token for each step; like format 0, SoftHSM2 has no
        translate mechanism, so the clear PIN field passes through host memory between
        decipherment and encipherment (validated first, buffer zeroed after)."""
        enciphered = derive.exact(block, 16, "enciphered format 4 PIN block")
        pan_field = pinblock.format4_pan_field(pan)

        def run(session: Any, raw: RawSession) -> bytes:
            source, target = keys.find_key(session, from_key), keys.find_key(session, to_key)
            keys.require(source, from_key, keys.AES, operation="PIN translation (source key)")
            keys.require(target, to_key, keys.AES, operation="PIN translation (destination key)")
            ecb = Mechanism.AES_ECB
            intermediate = raw.decrypt(source.handle, ecb, enciphered)
            xored = bytes(a ^ b for a, b in zip(intermediate, pan_field, strict=True))
            clear = bytearray(raw.decrypt(source.handle, ecb, xored))
            try:
                pinblock.decode_format4_field(bytes(clear))  # validation only
                out = raw.encrypt(target.handle, ecb, bytes(clear))
                xored_out = bytes(a ^ b for a, b in zip(out, pan_field, strict=True))
                return raw.encrypt(target.handle, ecb, xored_out)
            finally:
                clear[:] = bytes(len(clear))

        return await self._run(f"PIN translation {from_key} -> {to_key}", run, deadline_s)

    async def translate_pin_format0(
        self, from_key: KeyRef, to_key: KeyRef, block: bytes, pan: str, *, deadline_s: float
    ) -> bytes:
        enciphered = derive.exact(block, 8, "enciphered format 0 PIN block")

        def run(session: Any, raw: RawSession) -> bytes:
            source, target = keys.find_key(session, from_key), keys.find_key(session, to_key)
            keys.require(source, from_key, keys.TDES, operation="PIN translation (source key)")
            keys.require(target, to_key, keys.TDES, operation="PIN translation (destination key)")
            clear = bytearray(raw.decrypt(source.handle, Mechanism.DES3_ECB, enciphered))
            try:
                pinblock.decode_format0(bytes(clear), pan)  # validation only
                return raw.encrypt(target.handle, Mechanism.DES3_ECB, bytes(clear))
            finally:
                clear[:] = bytes(len(clear))

        return await self._run(f"PIN translation {from_key} -> {to_key}", run, deadline_s)

    async def sign(self, key: KeyRef, data: bytes, *, deadline_s: float) -> bytes:
        digest = hashlib.sha256(bytes(data)).digest()

        def run(session: Any, raw: RawSession) -> bytes:
            obj = keys.find_key(session, key)
            keys.require(obj, key, keys.EC, operation="ECDSA signature")
            return raw.sign(obj.handle, Mechanism.ECDSA, digest)

        raw = await self._run(f"ECDSA signature with key {key}", run, deadline_s)
        half = len(raw) // 2
        return encode_dss_signature(
            int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        )

    async def verify_signature(
        self, key: KeyRef, data: bytes, signature: bytes, *, deadline_s: float
    ) -> bool:
        digest = hashlib.sha256(bytes(data)).digest()
        try:
            r, s = decode_dss_signature(bytes(signature))
            raw = r.to_bytes(EC_COORDINATE_BYTES, "big") + s.to_bytes(EC_COORDINATE_BYTES, "big")
        except (ValueError, OverflowError, TypeError):
            return False  # not a DER ECDSA signature for P-256: cannot verify

        def run(session: Any, token: RawSession) -> bool:
            obj = keys.find_key(session, key)
            keys.require(obj, key, keys.EC, operation="ECDSA verification")
            public = keys.find_public(session, obj, key)
            return token.verify(public.handle, Mechanism.ECDSA, digest, raw)

        return await self._run(f"ECDSA verification with key {key}", run, deadline_s)

    async def list_keys(self, *, deadline_s: float) -> list[KeyInfo]:
        return await self._run(
            "key listing", lambda session, _: keys.list_keys(session), deadline_s
        )

    async def import_test_keys(
        self,
        entries: Iterable[KeyEntry],
        *,
        deadline_s: float,
        retail_mac_keys: Collection[str] = (),
    ) -> dict[str, AlgorithmUnavailable]:
        """Tests and simulators only: create token objects (SENSITIVE, not EXTRACTABLE)
        from clear keys such as tests.hsm_conformance.TEST_KEYS. Production keys arrive
        as TR-31 / X9.143 key blocks and are unwrapped inside the HSM, never in clear.

        Keys the token cannot hold (SM4 on SoftHSM2) are skipped and returned with the
        refusal, by label; any other problem raises. The double-length 3DES keys named
        in `retail_mac_keys` get the K1 companion the composed ISO 9797-1 MAC 3 needs
        (hsm.pkcs11_keys); no other key does."""
        refused: dict[str, AlgorithmUnavailable] = {}
        for entry in entries:

            def run(session: Any, _: RawSession, entry: KeyEntry = entry) -> None:
                keys.import_clear_key(session, entry, retail_mac=entry.label in retail_mac_keys)

            try:
                await self._run(f"import of key {entry.label}", run, deadline_s)
            except AlgorithmUnavailable as exc:
                refused[entry.label] = exc
        return refused

    async def close(self) -> None:
        """Log out and stop the token thread. Idempotent."""
        await self._worker.close()
