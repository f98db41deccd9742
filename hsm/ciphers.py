"""Block ciphers (3DES, AES, SM4; single DES only on explicit request) and key check
values, over whole blocks only.

Everything else in `hsm/` encrypts through this module, so the checks live here once:
- data must be a whole, non-empty number of blocks of the key's cipher
  (`DataLengthError`), IVs exactly one block;
- single DES is refused by every function except `single_des_encrypt_ecb` /
  `single_des_decrypt_ecb` (an 8-byte key cannot even be built as a TDES key);
- a double-length 3DES key K1||K2 is run as K1||K2||K1 (identical result, and the
  `cryptography` warning for two-key 3DES never fires);
- SM4 is probed once; if the OpenSSL under `cryptography` lacks it, every SM4 call
  raises `AlgorithmUnavailable` with that sentence, never a library traceback.
"""

from __future__ import annotations

import enum
import functools

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import cmac as _cmac
from cryptography.hazmat.primitives.ciphers import (
    BlockCipherAlgorithm,
    Cipher,
    CipherAlgorithm,
    algorithms,
    modes,
)

from hsm.errors import AlgorithmUnavailable, DataLengthError, KeyTypeError
from hsm.keys import Algorithm, SecretKey, require, with_article

_BLOCK_CIPHERS = (Algorithm.TDES, Algorithm.AES, Algorithm.SM4)


def _openssl_version() -> str:
    try:
        from cryptography.hazmat.backends.openssl import backend

        return str(backend.openssl_version_text())
    except Exception:  # the version is only decoration for the message
        return "unknown OpenSSL"


@functools.cache
def sm4_available() -> bool:
    """True when the installed `cryptography`/OpenSSL can run SM4 (GB/T 32907)."""
    try:
        Cipher(algorithms.SM4(bytes(16)), modes.ECB()).encryptor().update(bytes(16))
    except (UnsupportedAlgorithm, AttributeError):
        return False
    return True


def require_sm4() -> None:
    if not sm4_available():
        raise AlgorithmUnavailable(
            "SM4 is not available: the OpenSSL that `cryptography` uses "
            f"({_openssl_version()}) has no SM4 cipher; generation-3 cards and SM4 "
            "MACs cannot be served by this backend"
        )


def cipher_algorithm(key: SecretKey, *, operation: str) -> BlockCipherAlgorithm:
    """The `cryptography` cipher object for a TDES, AES or SM4 key."""
    require(key, *_BLOCK_CIPHERS, operation=operation)
    if key.algorithm is Algorithm.TDES:
        material = key.material
        if len(material) == 16:
            material = material + material[:8]
        return TripleDES(material)
    if key.algorithm is Algorithm.AES:
        return algorithms.AES(key.material)
    require_sm4()
    return algorithms.SM4(key.material)


def _check_blocks(data: bytes, block: int, *, what: str, operation: str) -> None:
    if not isinstance(data, bytes | bytearray):
        raise DataLengthError(f"{operation}: {what} must be bytes, not {type(data).__name__}")
    if len(data) == 0 or len(data) % block:
        raise DataLengthError(
            f"{operation}: {what} must be a non-empty multiple of the {block}-byte block, "
            f"got {len(data)} bytes"
        )


def _run(
    algorithm: CipherAlgorithm, mode: modes.ECB | modes.CBC, data: bytes, *, encrypt: bool
) -> bytes:
    cipher = Cipher(algorithm, mode)
    ctx = cipher.encryptor() if encrypt else cipher.decryptor()
    return ctx.update(bytes(data)) + ctx.finalize()


def encrypt_ecb(key: SecretKey, data: bytes) -> bytes:
    """ECB-encrypt whole blocks under a TDES, AES or SM4 key."""
    algorithm = cipher_algorithm(key, operation="ECB encrypt")
    _check_blocks(data, key.block_bytes, what="data", operation="ECB encrypt")
    return _run(algorithm, modes.ECB(), data, encrypt=True)


def decrypt_ecb(key: SecretKey, data: bytes) -> bytes:
    """ECB-decrypt whole blocks under a TDES, AES or SM4 key."""
    algorithm = cipher_algorithm(key, operation="ECB decrypt")
    _check_blocks(data, key.block_bytes, what="data", operation="ECB decrypt")
    return _run(algorithm, modes.ECB(), data, encrypt=False)


def _check_iv(key: SecretKey, iv: bytes, operation: str) -> None:
    if not isinstance(iv, bytes | bytearray) or len(iv) != key.block_bytes:
        got = len(iv) if isinstance(iv, bytes | bytearray) else type(iv).__name__
        raise DataLengthError(f"{operation}: IV must be {key.block_bytes} bytes, got {got}")


def encrypt_cbc(key: SecretKey, iv: bytes, data: bytes) -> bytes:
    """CBC-encrypt whole blocks (no padding is added)."""
    algorithm = cipher_algorithm(key, operation="CBC encrypt")
    _check_iv(key, iv, "CBC encrypt")
    _check_blocks(data, key.block_bytes, what="data", operation="CBC encrypt")
    return _run(algorithm, modes.CBC(bytes(iv)), data, encrypt=True)


def decrypt_cbc(key: SecretKey, iv: bytes, data: bytes) -> bytes:
    """CBC-decrypt whole blocks (no padding is removed)."""
    algorithm = cipher_algorithm(key, operation="CBC decrypt")
    _check_iv(key, iv, "CBC decrypt")
    _check_blocks(data, key.block_bytes, what="data", operation="CBC decrypt")
    return _run(algorithm, modes.CBC(bytes(iv)), data, encrypt=False)


def _single_des(key: SecretKey, data: bytes, *, encrypt: bool) -> bytes:
    operation = "single-DES ECB " + ("encrypt" if encrypt else "decrypt")
    require(key, Algorithm.DES, operation=operation)
    _check_blocks(data, 8, what="data", operation=operation)
    # K||K||K: EDE with three equal keys is single DES (SP 800-67 §3.3).
    return _run(TripleDES(key.material * 3), modes.ECB(), data, encrypt=encrypt)


def single_des_encrypt_ecb(key: SecretKey, data: bytes) -> bytes:
    """Single DES, for legacy interop only (and for ISO 9797-1 algorithm 3 inside)."""
    return _single_des(key, data, encrypt=True)


def single_des_decrypt_ecb(key: SecretKey, data: bytes) -> bytes:
    return _single_des(key, data, encrypt=False)


class KcvMethod(enum.Enum):
    # Encrypt one all-zero block, keep the leftmost bytes: ANSI X9.24-1:2017 A.2
    # "legacy approach", the usual KCV of DES/3DES keys. Offered for AES and SM4 too.
    ENCRYPT_ZERO_BLOCK = "encrypt-zero-block"
    # CMAC over one all-zero block, keep the leftmost bytes: ANSI X9.24-1:2017 A.3
    # "CMAC-based check values", for AES keys; the KCVs in the TR-31:2018 A.7.4
    # example are computed this way.
    CMAC_ZERO_BLOCK = "cmac-zero-block"


KCV_BYTES_DEFAULT = 3


def kcv(
    key: SecretKey,
    method: KcvMethod = KcvMethod.ENCRYPT_ZERO_BLOCK,
    length: int = KCV_BYTES_DEFAULT,
) -> bytes:
    """Key check value: `length` leftmost bytes (default 3) of the method's output."""
    algorithm = cipher_algorithm(key, operation="KCV")
    block = key.block_bytes
    if not 2 <= length <= block:
        raise DataLengthError(f"KCV length must be 2..{block} bytes, got {length}")
    if method is KcvMethod.ENCRYPT_ZERO_BLOCK:
        out = _run(algorithm, modes.ECB(), bytes(block), encrypt=True)
    else:
        if key.algorithm is not Algorithm.AES:
            raise KeyTypeError(
                f"the CMAC KCV is defined for AES keys, got {with_article(key.algorithm)} key"
            )
        c = _cmac.CMAC(algorithm)
        c.update(bytes(block))
        out = c.finalize()
    return out[:length]
