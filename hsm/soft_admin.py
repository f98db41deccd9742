"""Key management for the soft backend's key file: the demo key hierarchy
(`yikatong hsm init`), listing, and importing keys that arrive wrapped in TR-31 /
X9.143 key blocks under a key-encryption key already in the file — keys never arrive
or leave in clear; export is for backup only and wrapped the same way, except a
terminal's MAC key, which is derived (hsm.terminalkeys), never stored, and exported
wrapped under that terminal's KBPK for key injection (`export_terminal_key_block`).

The demo hierarchy (random keys, one version each):

    card.int.3des / card.int.sm4   issuer master keys for INTERNAL AUTHENTICATE (cards)
    card.ext.3des / card.ext.sm4   issuer master keys for EXTERNAL AUTHENTICATE; kept
                                   apart from the internal ones (hsm.cardauth: a card
                                   must not answer its own external challenge)
    emv.imk.ac                     EMV issuer master key for application cryptograms
    terminal.mac.master            master of the per-terminal request-signing keys
    ecard.sign                     e-card token signing key (ECDSA P-256)
    kek.import                     key-encryption key for importing key blocks
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hsm import tr31
from hsm.ciphers import KcvMethod, kcv
from hsm.errors import KeyTypeError
from hsm.keys import Algorithm, SecretKey, aes, sm4, tdes
from hsm.keystore import KeyEntry, KeyStore, KeyType
from hsm.terminalkeys import derive_terminal_mac_key
from hsm.tr31_header import KeyBlockHeader

_SECRET_KEY = {
    KeyType.tdes2: tdes,
    KeyType.tdes3: tdes,
    KeyType.aes128: aes,
    KeyType.aes256: aes,
    KeyType.sm4: sm4,
}


def check_value(key_type: KeyType, material: bytes) -> str:
    """KCV shown in listings: 3DES/SM4 encrypt-zero-block, AES CMAC (X9.24-1 A.3),
    EC: first 3 bytes of SHA-256 of the public key; HMAC keys have none."""
    if key_type is KeyType.ec_p256:
        private = serialization.load_der_private_key(material, password=None)
        public = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha256(public).hexdigest()[:6].upper()
    make = _SECRET_KEY.get(key_type)
    if make is None:
        return ""
    key = make(material)
    method = (
        KcvMethod.CMAC_ZERO_BLOCK
        if key.algorithm is Algorithm.AES
        else KcvMethod.ENCRYPT_ZERO_BLOCK
    )
    return kcv(key, method).hex().upper()


def entry(label: str, key_type: KeyType, usage: str, material: bytes, version: int = 1) -> KeyEntry:
    return KeyEntry(label, version, key_type, usage, check_value(key_type, material), material)


def demo_hierarchy(random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> list[KeyEntry]:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_der = ec_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return [
        entry("card.int.3des", KeyType.tdes2, "card-internal-auth", random_bytes(16)),
        entry("card.int.sm4", KeyType.sm4, "card-internal-auth", random_bytes(16)),
        entry("card.ext.3des", KeyType.tdes2, "card-external-auth", random_bytes(16)),
        entry("card.ext.sm4", KeyType.sm4, "card-external-auth", random_bytes(16)),
        entry("emv.imk.ac", KeyType.tdes2, "emv-application-cryptogram", random_bytes(16)),
        entry("terminal.mac.master", KeyType.aes256, "terminal-mac-master", random_bytes(32)),
        entry("ecard.sign", KeyType.ec_p256, "ecard-token-signing", ec_der),
        entry("kek.import", KeyType.aes256, "key-block-protection", random_bytes(32)),
    ]


def _key_type(key: SecretKey) -> KeyType:
    size = len(key.material)
    found = {
        (Algorithm.TDES, 16): KeyType.tdes2,
        (Algorithm.TDES, 24): KeyType.tdes3,
        (Algorithm.AES, 16): KeyType.aes128,
        (Algorithm.AES, 32): KeyType.aes256,
        (Algorithm.HMAC, 32): KeyType.hmac,
    }.get((key.algorithm, size))
    if found is None:
        raise KeyTypeError(f"a {size}-byte {key.algorithm} key cannot be kept in this key file")
    return found


def _kek(store: KeyStore, label: str, version: int | None) -> SecretKey:
    kek = store.get(label, version)
    if kek.key_type not in (KeyType.aes128, KeyType.aes256, KeyType.tdes2, KeyType.tdes3):
        raise KeyTypeError(f"key {label} is a {kek.key_type} key and cannot protect key blocks")
    return _SECRET_KEY[kek.key_type](kek.material)


def import_key_block(
    store: KeyStore,
    *,
    kek_label: str,
    key_block: str,
    label: str,
    version: int,
    usage: str,
    kek_version: int | None = None,
) -> KeyEntry:
    """Authenticate and unwrap `key_block` under the KEK and add the key to `store`
    (the caller saves the file). Refuses a tampered or malformed block."""
    unwrapped = tr31.unwrap(_kek(store, kek_label, kek_version), key_block)
    key_type = _key_type(unwrapped.key)
    new = entry(label, key_type, usage, unwrapped.key.material, version)
    store.add(new)
    return new


def export_key_block(
    store: KeyStore,
    *,
    kek_label: str,
    label: str,
    version: int | None = None,
    kek_version: int | None = None,
) -> str:
    """The key wrapped under the KEK as a version D (AES KEK) or B (3DES KEK) block,
    for backup; exportability 'E' (exportable under a trusted key)."""
    kek = _kek(store, kek_label, kek_version)
    source = store.get(label, version)
    make = _SECRET_KEY.get(source.key_type)
    if make is None:
        raise KeyTypeError(f"key {label} is a {source.key_type} key; only secret keys are exported")
    key = make(source.material)
    header = KeyBlockHeader(
        version="D" if kek.algorithm is Algorithm.AES else "B",
        key_usage="K0" if source.usage == "key-block-protection" else "D0",
        algorithm={Algorithm.TDES: "T", Algorithm.AES: "A"}[key.algorithm],
        mode_of_use="B",
        key_version=f"{source.version % 100:02d}",
        exportability="E",
    )
    return tr31.wrap(kek, header, key)


# A terminal's request-signing key travels as an HMAC key (usage M7, algorithm H) that
# the terminal may use to generate and verify MACs (mode C), and may not export again.
TERMINAL_KEY_USAGE, TERMINAL_KEY_ALGORITHM, TERMINAL_KEY_MODE = "M7", "H", "C"


def export_terminal_key_block(
    store: KeyStore,
    *,
    kek_label: str,
    master_label: str,
    terminal_id: str,
    kek_version: int | None = None,
) -> str:
    """Terminal `terminal_id`'s MAC key (derived from the MAC master `master_label`)
    wrapped under the KBPK `kek_label` in a version D block: usage M7 (HMAC), algorithm
    H, mode C, exportability N. HMAC keys travel only in version D blocks, so the KBPK
    must be an AES key."""
    kek = _kek(store, kek_label, kek_version)
    if kek.algorithm is not Algorithm.AES:
        raise KeyTypeError(
            f"key {kek_label} is a {kek.algorithm} key: a terminal's HMAC key travels only"
            " in a version D block, under an AES KBPK"
        )
    master = store.get(master_label)
    if master.key_type not in (KeyType.aes128, KeyType.aes256):
        raise KeyTypeError(f"key {master_label} is a {master.key_type} key, not an AES MAC master")
    key = derive_terminal_mac_key(aes(master.material), terminal_id)
    header = KeyBlockHeader(
        version="D",
        key_usage=TERMINAL_KEY_USAGE,
        algorithm=TERMINAL_KEY_ALGORITHM,
        mode_of_use=TERMINAL_KEY_MODE,
        key_version=f"{master.version % 100:02d}",
        exportability="N",
    )
    return tr31.wrap(kek, header, key)
