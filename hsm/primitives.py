"""The cryptographic primitives that HSM backends run inside the HSM boundary, in one
import. Each lives in its own module; this index only re-exports them:

    hsm.keys          typed keys (`SecretKey`, `Algorithm`), odd parity
    hsm.ciphers       3DES / AES / SM4 ECB and CBC, explicit single DES, KCVs, SM4 probe
    hsm.mac           ISO 9797-1 padding and MAC algorithms 1 and 3, CMAC, HMAC-SHA256,
                      constant-time verification
    hsm.cardauth      social security card key diversification and auth cryptograms
    hsm.emv           ICC master/session keys, ARQC, ARPC methods 1 and 2
    hsm.pinblock      ISO 9564 formats 0 and 4, format 0 translation
    hsm.tr31          TR-31 / ANSI X9.143 key blocks, versions B and D
    hsm.errors        the exception classes all of the above raise

Invariants kept by every function listed here: inputs are bytes (or digit strings for
PAN/PIN) plus typed keys; every length and key type is checked before any key is used;
failures raise an `hsm.errors` class whose message never holds key material, a PIN, or
a MAC/cryptogram value; nothing here does I/O, reads a clock or draws randomness on its
own (random padding/fill is passed in), so results are reproducible.
"""

from __future__ import annotations

from hsm.cardauth import (
    auth_cryptogram,
    derive_card_key,
    derive_process_key,
    diversification_block,
    external_auth_cryptogram,
    internal_auth_cryptogram,
    verify_auth_cryptogram,
)
from hsm.ciphers import (
    KcvMethod,
    decrypt_cbc,
    decrypt_ecb,
    encrypt_cbc,
    encrypt_ecb,
    kcv,
    single_des_decrypt_ecb,
    single_des_encrypt_ecb,
    sm4_available,
)
from hsm.emv import (
    arpc_method_1,
    arpc_method_2,
    derive_ac_session_key,
    derive_common_session_key,
    derive_icc_master_key_a,
    generate_ac,
    verify_arqc,
)
from hsm.errors import (
    AlgorithmUnavailable,
    DataFormatError,
    DataLengthError,
    HsmError,
    KeyBlockError,
    KeyLengthError,
    KeyTypeError,
    PinBlockError,
    VerificationFailed,
)
from hsm.keys import Algorithm, SecretKey, aes, hmac_key, single_des, sm4, tdes, with_odd_parity
from hsm.mac import (
    cmac,
    hmac_sha256,
    iso9797_mac1,
    iso9797_mac3,
    pad_method_1,
    pad_method_2,
    verify_cmac,
    verify_equal,
    verify_hmac_sha256,
    verify_iso9797_mac1,
    verify_iso9797_mac3,
)
from hsm.pinblock import (
    decode_format0,
    decrypt_format0,
    decrypt_format4,
    encode_format0,
    encrypt_format0,
    encrypt_format4,
    translate_format0,
)
from hsm.tr31 import UnwrappedKey, derive_block_keys, unwrap, wrap
from hsm.tr31_header import KeyBlockHeader

__all__ = [
    "Algorithm",
    "AlgorithmUnavailable",
    "DataFormatError",
    "DataLengthError",
    "HsmError",
    "KcvMethod",
    "KeyBlockError",
    "KeyBlockHeader",
    "KeyLengthError",
    "KeyTypeError",
    "PinBlockError",
    "SecretKey",
    "UnwrappedKey",
    "VerificationFailed",
    "aes",
    "arpc_method_1",
    "arpc_method_2",
    "auth_cryptogram",
    "cmac",
    "decode_format0",
    "decrypt_cbc",
    "decrypt_ecb",
    "decrypt_format0",
    "decrypt_format4",
    "derive_ac_session_key",
    "derive_block_keys",
    "derive_card_key",
    "derive_common_session_key",
    "derive_icc_master_key_a",
    "derive_process_key",
    "diversification_block",
    "encode_format0",
    "encrypt_cbc",
    "encrypt_ecb",
    "encrypt_format0",
    "encrypt_format4",
    "external_auth_cryptogram",
    "generate_ac",
    "hmac_key",
    "hmac_sha256",
    "internal_auth_cryptogram",
    "iso9797_mac1",
    "iso9797_mac3",
    "kcv",
    "pad_method_1",
    "pad_method_2",
    "single_des",
    "single_des_decrypt_ecb",
    "single_des_encrypt_ecb",
    "sm4",
    "sm4_available",
    "tdes",
    "translate_format0",
    "unwrap",
    "verify_arqc",
    "verify_auth_cryptogram",
    "verify_cmac",
    "verify_equal",
    "verify_hmac_sha256",
    "verify_iso9797_mac1",
    "verify_iso9797_mac3",
    "with_odd_parity",
    "wrap",
]
