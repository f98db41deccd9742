"""Direct calls into a PKCS#11 module's function list for the `Pkcs11Hsm` hot paths
(hsm.pkcs11): derive, destroy, encrypt, decrypt, sign, verify, random.

Why not python-pkcs11 objects here: every key python-pkcs11 derives is wrapped by
`make_object`, which reads ten attributes with two C_GetAttributeValue calls and builds
a new Python class; every `encrypt`/`derive_key` on a fresh object reads CKA_KEY_TYPE
again. On SoftHSM2 that was ~70 µs of the ~120 µs a derive-and-destroy cost (the
profile is in docs/PERFORMANCE.md, PKCS#11 section). These calls take object handles
and prebuilt templates and do exactly one PKCS#11 call per step.

It is the same module instance and the same logged-in session as python-pkcs11's:
`ctypes.CDLL` on the module path returns the handle the loader already holds (dlopen
counts references), and the function list comes from the module's own
C_GetFunctionList, so every handle is shared. python-pkcs11 still opens the token, logs
in, finds objects and imports keys (cold paths).

Invariants:
- only the worker's token thread calls in here (hsm.pkcs11_worker): SoftHSM2 runs
  without locks (TOOLCHAIN.md §2.3);
- nothing here reads CKA_VALUE, wraps a key or creates a key from clear bytes: derived
  keys are session objects (CKA_TOKEN false), SENSITIVE, not EXTRACTABLE, PRIVATE, with
  only the capabilities asked for;
- a non-zero CK_RV raises the python-pkcs11 exception class for that code, or
  `RawCallError` naming the code; hsm.pkcs11_errors says what each means to a
  caller of the Hsm protocol (hsm.errors), naming the class, never a value.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

import pkcs11.exceptions as px
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

CK_ULONG = ctypes.c_ulong
CK_RV = CK_ULONG
_PTR = ctypes.c_void_p
SIGN_BUFFER_BYTES = 512  # > any signature or MAC of the mechanisms used (ECDSA P-256: 64)


class _CkMechanism(ctypes.Structure):
    _fields_ = (("mechanism", CK_ULONG), ("pParameter", _PTR), ("ulParameterLen", CK_ULONG))


class _CkAttribute(ctypes.Structure):
    _fields_ = (("type", CK_ULONG), ("pValue", _PTR), ("ulValueLen", CK_ULONG))


class _CkDerivationString(ctypes.Structure):
    """CK_KEY_DERIVATION_STRING_DATA: the parameter of CKM_*_ECB_ENCRYPT_DATA."""

    _fields_ = (("pData", _PTR), ("ulLen", CK_ULONG))


# CK_FUNCTION_LIST of PKCS#11 v2.40 (pkcs11f.h order), up to the last entry used here.
# fmt: off
_FUNCTION_ORDER = (
    "C_Initialize", "C_Finalize", "C_GetInfo", "C_GetFunctionList", "C_GetSlotList",
    "C_GetSlotInfo", "C_GetTokenInfo", "C_GetMechanismList", "C_GetMechanismInfo",
    "C_InitToken", "C_InitPIN", "C_SetPIN", "C_OpenSession", "C_CloseSession",
    "C_CloseAllSessions", "C_GetSessionInfo", "C_GetOperationState", "C_SetOperationState",
    "C_Login", "C_Logout", "C_CreateObject", "C_CopyObject", "C_DestroyObject",
    "C_GetObjectSize", "C_GetAttributeValue", "C_SetAttributeValue", "C_FindObjectsInit",
    "C_FindObjects", "C_FindObjectsFinal", "C_EncryptInit", "C_Encrypt", "C_EncryptUpdate",
    "C_EncryptFinal", "C_DecryptInit", "C_Decrypt", "C_DecryptUpdate", "C_DecryptFinal",
    "C_DigestInit", "C_Digest", "C_DigestUpdate", "C_DigestKey", "C_DigestFinal", "C_SignInit",
    "C_Sign", "C_SignUpdate", "C_SignFinal", "C_SignRecoverInit", "C_SignRecover",
    "C_VerifyInit", "C_Verify", "C_VerifyUpdate", "C_VerifyFinal", "C_VerifyRecoverInit",
    "C_VerifyRecover", "C_DigestEncryptUpdate", "C_DecryptDigestUpdate", "C_SignEncryptUpdate",
    "C_DecryptVerifyUpdate", "C_GenerateKey", "C_GenerateKeyPair", "C_WrapKey", "C_UnwrapKey",
    "C_DeriveKey", "C_SeedRandom", "C_GenerateRandom",
)
# fmt: on


class _CkFunctionList(ctypes.Structure):
    _fields_ = (
        ("major", ctypes.c_ubyte),
        ("minor", ctypes.c_ubyte),
        *((name, _PTR) for name in _FUNCTION_ORDER),
    )


_ULP = ctypes.POINTER(CK_ULONG)
_MP = ctypes.POINTER(_CkMechanism)
_AP = ctypes.POINTER(_CkAttribute)
_BYTES = ctypes.c_char_p
# Foreign calls through CFUNCTYPE release the GIL while the token works.
_SIGNATURES: dict[str, tuple[Any, ...]] = {
    "C_DestroyObject": (CK_ULONG, CK_ULONG),
    "C_EncryptInit": (CK_ULONG, _MP, CK_ULONG),
    "C_Encrypt": (CK_ULONG, _BYTES, CK_ULONG, _PTR, _ULP),
    "C_DecryptInit": (CK_ULONG, _MP, CK_ULONG),
    "C_Decrypt": (CK_ULONG, _BYTES, CK_ULONG, _PTR, _ULP),
    "C_SignInit": (CK_ULONG, _MP, CK_ULONG),
    "C_Sign": (CK_ULONG, _BYTES, CK_ULONG, _PTR, _ULP),
    "C_VerifyInit": (CK_ULONG, _MP, CK_ULONG),
    "C_Verify": (CK_ULONG, _BYTES, CK_ULONG, _BYTES, CK_ULONG),
    "C_DeriveKey": (CK_ULONG, _MP, CK_ULONG, _AP, CK_ULONG, _ULP),
    "C_GenerateRandom": (CK_ULONG, _PTR, CK_ULONG),
}

# CK_RV values (pkcs11t.h) and their python-pkcs11 classes (hsm.pkcs11_errors maps on).
CKR_OK = 0x0
CKR_SIGNATURE_INVALID = 0xC0
CKR_SIGNATURE_LEN_RANGE = 0xC1
CKR_BUFFER_TOO_SMALL = 0x150
CKR_KEY_FUNCTION_NOT_PERMITTED = 0x68
_ERRORS: dict[int, type[px.PKCS11Error]] = {
    0x02: px.HostMemory,
    0x05: px.GeneralError,
    0x06: px.FunctionFailed,
    0x07: px.ArgumentsBad,
    0x10: px.AttributeReadOnly,
    0x11: px.AttributeSensitive,
    0x12: px.AttributeTypeInvalid,
    0x13: px.AttributeValueInvalid,
    0x20: px.DataInvalid,
    0x21: px.DataLenRange,
    0x30: px.DeviceError,
    0x31: px.DeviceMemory,
    0x32: px.DeviceRemoved,
    0x40: px.EncryptedDataInvalid,
    0x41: px.EncryptedDataLenRange,
    0x50: px.FunctionCancelled,
    0x54: px.FunctionNotSupported,
    0x60: px.KeyHandleInvalid,
    0x62: px.KeySizeRange,
    0x63: px.KeyTypeInconsistent,
    0x64: px.KeyNotNeeded,
    0x66: px.KeyNeeded,
    0x67: px.KeyIndigestible,
    0x6A: px.KeyUnextractable,
    0x70: px.MechanismInvalid,
    0x71: px.MechanismParamInvalid,
    0x82: px.ObjectHandleInvalid,
    0x90: px.OperationActive,
    0x91: px.OperationNotInitialized,
    0xB0: px.SessionClosed,
    0xB3: px.SessionHandleInvalid,
    0xB5: px.SessionReadOnly,
    CKR_SIGNATURE_INVALID: px.SignatureInvalid,
    CKR_SIGNATURE_LEN_RANGE: px.SignatureLenRange,
    0xD0: px.TemplateIncomplete,
    0xD1: px.TemplateInconsistent,
    0xE0: px.TokenNotPresent,
    0x101: px.UserNotLoggedIn,
}


class RawCallError(px.PKCS11Error):
    """A CK_RV python-pkcs11 has no class for; the message names the code."""


def check(rv: int, function: str) -> None:
    if rv == CKR_OK:
        return
    cls = _ERRORS.get(rv)
    if cls is None:
        raise RawCallError(f"{function} returned CK_RV 0x{rv:X}")
    raise cls()


class KeyFunctionNotPermitted(RawCallError):
    """CKR_KEY_FUNCTION_NOT_PERMITTED (0x68), which python-pkcs11 0.10 has no class
    for: the key's CKA_ENCRYPT / CKA_SIGN / CKA_DERIVE ... does not allow the call."""


_ERRORS[CKR_KEY_FUNCTION_NOT_PERMITTED] = KeyFunctionNotPermitted


class Template:
    """A CK_ATTRIBUTE array built once (values kept alive with it) for C_DeriveKey."""

    def __init__(self, attributes: Sequence[tuple[Attribute, bool | int]]) -> None:
        self._values: list[ctypes.c_ubyte | CK_ULONG] = []
        self.array = (_CkAttribute * len(attributes))()
        for slot, (attribute, value) in zip(self.array, attributes, strict=True):
            box: ctypes.c_ubyte | CK_ULONG = (
                ctypes.c_ubyte(value) if isinstance(value, bool) else CK_ULONG(value)
            )
            self._values.append(box)
            slot.type = int(attribute)
            slot.pValue = ctypes.addressof(box)
            slot.ulValueLen = ctypes.sizeof(box)
        self.count = len(attributes)


_CAPABILITIES = (
    Attribute.ENCRYPT,
    Attribute.DECRYPT,
    Attribute.SIGN,
    Attribute.VERIFY,
    Attribute.WRAP,
    Attribute.UNWRAP,
    Attribute.DERIVE,
)


def derived_key_template(
    key_type: KeyType, *capabilities: Attribute, value_len: int = 0
) -> Template:
    """A session key, sensitive, never extractable, with only `capabilities` true.
    `value_len` for key types whose length is not implied (generic secret)."""
    attributes: list[tuple[Attribute, bool | int]] = [
        (Attribute.CLASS, int(ObjectClass.SECRET_KEY)),
        (Attribute.KEY_TYPE, int(key_type)),
        (Attribute.TOKEN, False),
        (Attribute.PRIVATE, True),
        (Attribute.SENSITIVE, True),
        (Attribute.EXTRACTABLE, False),
    ]
    for attribute in _CAPABILITIES:
        attributes.append((attribute, attribute in capabilities))
    if value_len:
        attributes.append((Attribute.VALUE_LEN, value_len))
    return Template(attributes)


def _mechanism(mechanism: Mechanism, parameter: bytes | None) -> tuple[_CkMechanism, Any]:
    """The CK_MECHANISM and the object that keeps its parameter alive."""
    if not parameter:
        return _CkMechanism(int(mechanism), None, 0), None
    keep = ctypes.create_string_buffer(parameter, len(parameter))
    return _CkMechanism(int(mechanism), ctypes.addressof(keep), len(parameter)), keep


class RawSession:
    """The function list of the loaded module bound to one session handle."""

    def __init__(self, module_path: str, session_handle: int) -> None:
        library = ctypes.CDLL(module_path)
        get_list = ctypes.CFUNCTYPE(CK_RV, ctypes.POINTER(ctypes.POINTER(_CkFunctionList)))(
            ("C_GetFunctionList", library)
        )
        table = ctypes.POINTER(_CkFunctionList)()
        check(get_list(ctypes.byref(table)), "C_GetFunctionList")
        self._library = library  # keeps the module loaded as long as the functions
        self.session = CK_ULONG(session_handle)
        self._fn: dict[str, Any] = {}
        for name, argtypes in _SIGNATURES.items():
            address = getattr(table.contents, name)
            if not address:
                raise RawCallError(f"the module's function list has no {name}")
            self._fn[name] = ctypes.CFUNCTYPE(CK_RV, *argtypes)(address)
        self._destroy = self._fn["C_DestroyObject"]
        self._derive = self._fn["C_DeriveKey"]

    def __repr__(self) -> str:
        return f"RawSession(session={self.session.value})"

    def function_address(self, name: str) -> int:
        """The entry point the module's function list gives for `name` (for tests)."""
        return ctypes.cast(self._fn[name], _PTR).value or 0

    def derive_encrypt_data(
        self, mechanism: Mechanism, base: int, data: bytes, template: Template
    ) -> int:
        """C_DeriveKey with CKM_DES3_ECB_ENCRYPT_DATA or CKM_AES_ECB_ENCRYPT_DATA: the
        new key's value is the ECB encryption of `data` under `base`. Its handle."""
        keep = ctypes.create_string_buffer(data, len(data))
        parameter = _CkDerivationString(ctypes.addressof(keep), len(data))
        mech = _CkMechanism(int(mechanism), ctypes.addressof(parameter), ctypes.sizeof(parameter))
        handle = CK_ULONG()
        rv = self._derive(
            self.session,
            ctypes.byref(mech),
            base,
            template.array,
            template.count,
            ctypes.byref(handle),
        )
        check(rv, "C_DeriveKey")
        return handle.value

    def destroy(self, handle: int) -> None:
        check(self._destroy(self.session, handle), "C_DestroyObject")

    def _crypt(
        self, op: str, key: int, mechanism: Mechanism, data: bytes, iv: bytes | None
    ) -> bytes:
        """Single-part C_{op}Init + C_{op}: for the unpadded ECB/CBC mechanisms used
        here the output is as long as the input."""
        mech, keep = _mechanism(mechanism, iv)
        check(self._fn[f"C_{op}Init"](self.session, ctypes.byref(mech), key), f"C_{op}Init")
        out = ctypes.create_string_buffer(len(data) + 32)
        out_len = CK_ULONG(len(out))
        check(
            self._fn[f"C_{op}"](self.session, data, len(data), out, ctypes.byref(out_len)),
            f"C_{op}",
        )
        del keep
        return out.raw[: out_len.value]

    def encrypt(
        self, key: int, mechanism: Mechanism, data: bytes, iv: bytes | None = None
    ) -> bytes:
        return self._crypt("Encrypt", key, mechanism, data, iv)

    def decrypt(self, key: int, mechanism: Mechanism, data: bytes) -> bytes:
        return self._crypt("Decrypt", key, mechanism, data, None)

    def sign(self, key: int, mechanism: Mechanism, data: bytes) -> bytes:
        mech, _ = _mechanism(mechanism, None)
        check(self._fn["C_SignInit"](self.session, ctypes.byref(mech), key), "C_SignInit")
        out = ctypes.create_string_buffer(SIGN_BUFFER_BYTES)
        out_len = CK_ULONG(SIGN_BUFFER_BYTES)
        rv = self._fn["C_Sign"](self.session, data, len(data), out, ctypes.byref(out_len))
        if rv == CKR_BUFFER_TOO_SMALL:  # the operation stays active: finish it
            out = ctypes.create_string_buffer(out_len.value)
            rv = self._fn["C_Sign"](self.session, data, len(data), out, ctypes.byref(out_len))
        check(rv, "C_Sign")
        return out.raw[: out_len.value]

    def verify(self, key: int, mechanism: Mechanism, data: bytes, signature: bytes) -> bool:
        """False for a signature that does not verify (or has the wrong length)."""
        mech, _ = _mechanism(mechanism, None)
        check(self._fn["C_VerifyInit"](self.session, ctypes.byref(mech), key), "C_VerifyInit")
        rv = self._fn["C_Verify"](self.session, data, len(data), signature, len(signature))
        if rv in (CKR_SIGNATURE_INVALID, CKR_SIGNATURE_LEN_RANGE):
            return False
        check(rv, "C_Verify")
        return True

    def generate_random(self, n: int) -> bytes:
        out = ctypes.create_string_buffer(n)
        check(self._fn["C_GenerateRandom"](self.session, out, n), "C_GenerateRandom")
        return out.raw
