"""Key objects on a PKCS#11 token for the `Pkcs11Hsm` backend (hsm.pkcs11): how a
`KeyRef` names an object, type checks, the listing, and the test-only import.

Every function here takes the worker's logged-in session and runs on the worker's
token thread (hsm.pkcs11_worker); none of them is safe to call from anywhere else.

Naming rule (the token's half of DESIGN.md §5):
    CKA_LABEL  the KeyRef label;
    CKA_ID     the version as ASCII decimal digits (b"1", b"2", ...); `KeyRef.version
               None` selects the highest. Objects whose CKA_ID is not a decimal number
               are not keys of this backend and are ignored.
    companion  a double-length 3DES key K1||K2 used for ISO 9797-1 MAC algorithm 3 has a
               K1||K1||K1 companion object (3DES with three equal keys is single DES
               under K1) labelled "<label>#k1" with the same CKA_ID. '#' is outside
               `hsm.keystore.LABEL_RE`, so no key label can collide with a companion;
               companions are not listed, and their check value is never computed (a
               KCV of one half would let an attacker search 2^56 keys per half).

Invariants:
- no function reads CKA_VALUE or wraps a key: keys are SENSITIVE and not EXTRACTABLE
  from the moment they are created; listings show label, version, type, usage and a
  check value computed inside the token, never material;
- a missing label or version is `KeyNotFound`; a key whose type does not fit the
  operation is `KeyTypeError` (or `KeyLengthError` for a 3DES key of the wrong
  length), raised before the key is used; two objects with one label and version are
  `HsmMisconfigured`. All of these are misconfiguration (hsm.errors): no retry
  clears them.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import AttributeTypeInvalid, PKCS11Error
from pkcs11.util.ec import encode_named_curve_parameters

from hsm.errors import AlgorithmUnavailable, HsmMisconfigured, KeyLengthError, KeyTypeError
from hsm.keys import with_article
from hsm.keystore import KeyEntry
from hsm.keystore import KeyType as StoreType
from hsm.protocol import KeyInfo, KeyNotFound, KeyRef

COMPANION_SUFFIX = "#k1"
P256_OID = "1.2.840.10045.3.1.7"
P256_PARAMS = encode_named_curve_parameters(P256_OID)
P256_POINT_BYTES = 65  # uncompressed: 04 || X || Y
KCV_BYTES = 3

# Algorithm names as the error messages and hsm.keys use them.
TDES, AES, HMAC, EC = "TDES", "AES", "HMAC", "EC"
_ALGORITHM = {
    KeyType.DES2: TDES,
    KeyType.DES3: TDES,
    KeyType.AES: AES,
    KeyType.GENERIC_SECRET: HMAC,
    KeyType.EC: EC,
}
_CAPABILITIES = (
    (Attribute.ENCRYPT, "encrypt"),
    (Attribute.DECRYPT, "decrypt"),
    (Attribute.SIGN, "sign"),
    (Attribute.VERIFY, "verify"),
    (Attribute.DERIVE, "derive"),
)


def _version_of(obj: Any) -> int | None:
    raw = bytes(obj[Attribute.ID])
    if not raw or not raw.isdigit() or len(raw) > 9:
        return None
    return int(raw)


@dataclass(frozen=True, slots=True)
class TokenKey:
    """A stored key as the operations use it: the handle to operate with, and what
    every operation checks, known up front (reading CKA_KEY_TYPE of a token object
    costs ~25 µs on SoftHSM2's file store, more than a 3DES encryption)."""

    handle: int  # of the session copy if there is one, else of the token object
    key_type: Any  # a pkcs11.KeyType, or the bare number of a vendor key type
    version: int
    obj: Any  # the token object (python-pkcs11), for the cold paths
    copy: Any = None  # the session copy (python-pkcs11 object), destroyed when dropped

    def __repr__(self) -> str:
        kind = getattr(self.key_type, "name", self.key_type)
        copied = ", session copy" if self.copy is not None else ""
        return f"TokenKey(handle={self.handle}, {kind}, v{self.version}{copied})"


# Found keys are kept for HANDLE_TTL_S, for two costs of SoftHSM2's file object store
# (profile in docs/PERFORMANCE.md, PKCS#11 section):
# - a lookup (C_FindObjects, then C_GetAttributeValue of each candidate's CKA_ID and
#   the chosen one's CKA_KEY_TYPE) costs far more than an operation;
# - every use of a token object re-checks its file (~15 µs per encryption, ~25 µs per
#   derivation). So the key is used through a *session copy* (C_CopyObject with
#   CKA_TOKEN false): the same key inside the same token, with the token object's
#   SENSITIVE / EXTRACTABLE / PRIVATE attributes (a copy cannot weaken them), living
#   in this process's session only. A token that refuses the copy (CKA_COPYABLE
#   false) is used through the token object itself.
# A copy is destroyed when its entry expires or is forgotten. Only the worker thread
# calls in here, so no lock is needed. Imports in this process and the worker's logout
# forget everything; a key added or deleted by another process is seen within the TTL
# (a deleted key stays usable through its copy until then).
HANDLE_TTL_S = 5.0
_handles: dict[tuple[str, int | None, tuple[Any, ...]], tuple[float, TokenKey]] = {}


def _drop(found: TokenKey) -> None:
    if found.copy is not None:
        with contextlib.suppress(PKCS11Error):  # the session is gone, and its objects
            found.copy.destroy()


def forget_handles(*, destroy_copies: bool = True) -> None:
    """Empty the cache. `destroy_copies=False` after a new login: the copies died with
    the earlier session, and their handle numbers may now name other objects."""
    entries = list(_handles.values())
    _handles.clear()
    if destroy_copies:
        for _, found in entries:
            _drop(found)


def _find(session: Any, label: str, version: int | None, classes: tuple[Any, ...]) -> TokenKey:
    key = (label, version, classes)
    now = time.monotonic()
    hit = _handles.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    for stale in [k for k, (expires, _) in _handles.items() if expires <= now]:
        _drop(_handles.pop(stale)[1])
    found = _find_uncached(session, label, version, classes)
    _handles[key] = (now + HANDLE_TTL_S, found)
    return found


def _find_uncached(
    session: Any, label: str, version: int | None, classes: tuple[Any, ...]
) -> TokenKey:
    candidates: dict[int, list[Any]] = {}
    for object_class in classes:
        template = {Attribute.LABEL: label, Attribute.CLASS: object_class, Attribute.TOKEN: True}
        for obj in list(session.get_objects(template)):
            found = _version_of(obj)
            if found is not None:
                candidates.setdefault(found, []).append(obj)
    if not candidates:
        raise KeyNotFound(f"no key labelled {label!r} on the token")
    chosen = max(candidates) if version is None else version
    if chosen not in candidates:
        raise KeyNotFound(f"no key {label!r} version {version} on the token")
    if len(candidates[chosen]) > 1:
        raise HsmMisconfigured(f"the token holds more than one key {label!r} version {chosen}")
    obj = candidates[chosen][0]
    key_type = obj[Attribute.KEY_TYPE]
    try:
        copy = obj.copy({Attribute.TOKEN: False})
    except PKCS11Error:  # CKA_COPYABLE false, or no room: use the token object
        return TokenKey(int(obj.handle), key_type, chosen, obj)
    return TokenKey(int(copy.handle), key_type, chosen, obj, copy)


def find_key(session: Any, ref: KeyRef) -> TokenKey:
    """The secret or private key `ref` names (never a public key)."""
    return _find(session, ref.label, ref.version, (ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY))


def find_public(session: Any, private: TokenKey, ref: KeyRef) -> TokenKey:
    """The public key stored next to an EC private key (same label and CKA_ID)."""
    try:
        return _find(session, ref.label, private.version, (ObjectClass.PUBLIC_KEY,))
    except KeyNotFound:
        raise KeyNotFound(
            f"EC key {ref.label!r} version {private.version} has no public key object on the token"
        ) from None


def find_companion(session: Any, key: TokenKey, ref: KeyRef) -> TokenKey:
    """The K1||K1||K1 companion of a double-length 3DES key (see module docstring)."""
    try:
        return _find(session, ref.label + COMPANION_SUFFIX, key.version, (ObjectClass.SECRET_KEY,))
    except KeyNotFound:
        raise KeyNotFound(
            f"key {ref.label!r} version {key.version} has no K1 companion object "
            f"{ref.label + COMPANION_SUFFIX!r}, needed for the composed ISO 9797-1 MAC 3"
        ) from None


def _algorithm(key_type: Any) -> str:
    return _ALGORITHM.get(key_type, f"key type 0x{int(key_type):X}")


def algorithm_of(obj: Any) -> str:
    return _algorithm(obj[Attribute.KEY_TYPE])


def require(key: TokenKey, ref: KeyRef, *algorithms: str, operation: str) -> None:
    """`KeyTypeError` unless the key's algorithm is one of `algorithms`."""
    got = _algorithm(key.key_type)
    if got not in algorithms:
        wanted = " or ".join(algorithms)
        raise KeyTypeError(
            f"{operation} with key {ref} needs {with_article(wanted)} key, "
            f"got {with_article(got)} key"
        )


def require_double_length_tdes(key: TokenKey, ref: KeyRef, *, operation: str) -> None:
    require(key, ref, TDES, operation=operation)
    if key.key_type != KeyType.DES2:
        raise KeyLengthError(
            f"{operation} with key {ref} needs a double-length (16-byte) TDES key, got 24 bytes"
        )


def _store_type(obj: Any) -> str:
    key_type = obj[Attribute.KEY_TYPE]
    if key_type == KeyType.DES2:
        return StoreType.tdes2.value
    if key_type == KeyType.DES3:
        return StoreType.tdes3.value
    if key_type == KeyType.AES:
        return f"AES{int(obj[Attribute.VALUE_LEN]) * 8}"
    if key_type == KeyType.GENERIC_SECRET:
        return StoreType.hmac.value
    if key_type == KeyType.EC:
        return StoreType.ec_p256.value if obj[Attribute.EC_PARAMS] == P256_PARAMS else "EC"
    return algorithm_of(obj)


def _usage(obj: Any) -> str:
    names = []
    for attribute, name in _CAPABILITIES:
        try:
            if obj[attribute]:
                names.append(name)
        except AttributeTypeInvalid:  # e.g. CKA_ENCRYPT of an EC private key
            continue
    return ",".join(names)


def public_point(public: Any) -> bytes:
    """The uncompressed point of an EC public key object (CKA_EC_POINT is DER)."""
    der = bytes(public[Attribute.EC_POINT])
    if len(der) == P256_POINT_BYTES + 2 and der[:2] == bytes([0x04, P256_POINT_BYTES]):
        return der[2:]
    return der


def check_value(session: Any, obj: Any, ref: KeyRef) -> str:
    """The KCV hsm.soft_admin shows for the same key, computed inside the token:
    3DES encrypt-zero-block, AES CMAC of a zero block (X9.24-1 A.3), EC the first 3
    bytes of SHA-256 of the public key's SubjectPublicKeyInfo, HMAC keys none."""
    algorithm = algorithm_of(obj)
    if algorithm == TDES:
        return bytes(obj.encrypt(bytes(8), mechanism=Mechanism.DES3_ECB))[:KCV_BYTES].hex().upper()
    if algorithm == AES:
        return bytes(obj.sign(bytes(16), mechanism=Mechanism.AES_CMAC))[:KCV_BYTES].hex().upper()
    if algorithm == EC and obj[Attribute.EC_PARAMS] == P256_PARAMS:
        try:
            public = _find(session, ref.label, ref.version, (ObjectClass.PUBLIC_KEY,))
            point = public_point(public.obj)
        except KeyNotFound:
            return ""  # listed all the same; sign works, verify will say what is missing
        spki = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha256(spki).hexdigest()[: KCV_BYTES * 2].upper()
    return ""


def list_keys(session: Any) -> list[KeyInfo]:
    infos = []
    for object_class in (ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY):
        template = {Attribute.CLASS: object_class, Attribute.TOKEN: True}
        for obj in list(session.get_objects(template)):
            label, version = str(obj[Attribute.LABEL]), _version_of(obj)
            if version is None or COMPANION_SUFFIX in label:
                continue
            kcv = check_value(session, obj, KeyRef(label, version))
            infos.append(KeyInfo(label, version, _store_type(obj), _usage(obj), kcv))
    return sorted(infos, key=lambda info: (info.label, info.version))


# -- test-only import -----------------------------------------------------------------


def _secret(
    entry: KeyEntry, key_type: Any, value: bytes, *, label: str, **flags: bool
) -> dict[Any, Any]:
    template = {
        Attribute.CLASS: ObjectClass.SECRET_KEY,
        Attribute.KEY_TYPE: key_type,
        Attribute.VALUE: value,
        Attribute.LABEL: label,
        Attribute.ID: str(entry.version).encode("ascii"),
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
    }
    for attribute, name in _CAPABILITIES:
        template[attribute] = flags.get(name, False)
    return template


def import_clear_key(session: Any, entry: KeyEntry, *, retail_mac: bool) -> None:
    """Create token objects for one clear key (tests and simulators only; production
    keys arrive as key blocks and are never handled in clear by this process).

    `retail_mac`: also create the K1||K1||K1 companion of a double-length 3DES key, for
    the composed ISO 9797-1 MAC 3. Only for keys that need it: every companion is a
    single-DES oracle under that key's K1."""
    forget_handles()
    t = entry.key_type
    if t is StoreType.sm4:
        raise AlgorithmUnavailable(
            f"key {entry.label} v{entry.version}: the token offers no SM4 key type (CKK_SM4) "
            "and no CKM_SM4_ECB mechanism, so SM4 keys cannot be held by this PKCS#11 backend"
        )
    m, label = entry.material, entry.label
    templates: list[dict[Any, Any]] = []
    if t in (StoreType.tdes2, StoreType.tdes3):
        key_type = KeyType.DES2 if t is StoreType.tdes2 else KeyType.DES3
        flags = {"encrypt": True, "decrypt": True, "sign": True, "derive": True}
        templates.append(_secret(entry, key_type, m, label=label, **flags))
        if t is StoreType.tdes2 and retail_mac:
            companion = label + COMPANION_SUFFIX
            templates.append(_secret(entry, KeyType.DES3, m[:8] * 3, label=companion, encrypt=True))
    elif t in (StoreType.aes128, StoreType.aes256):
        flags = {"encrypt": True, "decrypt": True, "sign": True, "derive": True}
        templates.append(_secret(entry, KeyType.AES, m, label=label, **flags))
    elif t is StoreType.hmac:
        templates.append(_secret(entry, KeyType.GENERIC_SECRET, m, label=label, sign=True))
    elif t is StoreType.ec_p256:
        templates.extend(_ec_templates(entry))
    else:
        raise KeyTypeError(f"key {entry.label}: cannot import a {t} key into the token")
    for template in templates:
        session.create_object(template)


def _ec_templates(entry: KeyEntry) -> list[dict[Any, Any]]:
    private = serialization.load_der_private_key(entry.material, password=None)
    if not isinstance(private, ec.EllipticCurvePrivateKey) or private.curve.name != "secp256r1":
        raise KeyTypeError(f"key {entry.label} is not an EC P-256 private key")
    point = private.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    common = {
        Attribute.KEY_TYPE: KeyType.EC,
        Attribute.EC_PARAMS: P256_PARAMS,
        Attribute.LABEL: entry.label,
        Attribute.ID: str(entry.version).encode("ascii"),
        Attribute.TOKEN: True,
    }
    return [
        {
            **common,
            Attribute.CLASS: ObjectClass.PRIVATE_KEY,
            Attribute.VALUE: private.private_numbers().private_value.to_bytes(32, "big"),
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.SIGN: True,
        },
        {
            **common,
            Attribute.CLASS: ObjectClass.PUBLIC_KEY,
            Attribute.EC_POINT: bytes([0x04, len(point)]) + point,
            Attribute.VERIFY: True,
        },
    ]
