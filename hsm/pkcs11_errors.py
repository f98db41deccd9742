"""What a PKCS#11 return value means to a caller of the `Hsm` protocol: the CK_RV
families of the token's errors mapped onto hsm.errors (REVIEW.md §5).

    transient         the device, the session or the login went away, or a handle of
                      the handle cache outlived its object: `HsmUnavailable` (the
                      backend looks keys up afresh after a stale handle, so a retry can
                      succeed)
    misconfiguration  the key's type, length or usage attributes (CKA_DERIVE, CKA_SIGN
                      ... false), a mechanism the token lacks, or a template or policy
                      the token refuses: an `HsmMisconfigured` class, which every retry
                      meets again
    input             the data's length or content: `DataLengthError`
    anything else     a bare `HsmError` naming the class (unclassified)

Messages name the operation, the key and the python-pkcs11 class, never a value.
"""

from __future__ import annotations

import pkcs11.exceptions as px

from hsm.errors import (
    AlgorithmUnavailable,
    DataLengthError,
    HsmError,
    HsmMisconfigured,
    HsmUnavailable,
    KeyLengthError,
    KeyTypeError,
    KeyUsageError,
)
from hsm.pkcs11_raw import KeyFunctionNotPermitted

# Transient: the token, the session or the login went away, or the library is in a
# state a new session (or the handle cache's next lookup) gets out of.
_UNAVAILABLE = (
    px.DeviceError,
    px.DeviceMemory,
    px.DeviceRemoved,
    px.FunctionCancelled,
    px.FunctionFailed,
    px.GeneralError,
    px.HostMemory,
    px.KeyHandleInvalid,  # a cached handle of a session that ended (hsm.pkcs11_keys)
    px.ObjectHandleInvalid,
    px.OperationActive,
    px.OperationNotInitialized,
    px.SessionClosed,
    px.SessionCount,
    px.SessionHandleInvalid,
    px.TokenNotPresent,
    px.TokenNotRecognised,
    px.UserNotLoggedIn,
)
# Misconfiguration: the key or the token is set up so that every retry is refused.
_KEY_USAGE = (
    KeyFunctionNotPermitted,
    px.KeyUnextractable,
    px.KeyNotWrappable,
)
_KEY_TYPE = (px.KeyTypeInconsistent,)
_KEY_LENGTH = (px.KeySizeRange,)
_ALGORITHM = (px.MechanismInvalid, px.MechanismParamInvalid, px.FunctionNotSupported)
_TOKEN_POLICY = (
    px.ArgumentsBad,
    px.AttributeReadOnly,
    px.AttributeSensitive,
    px.AttributeTypeInvalid,
    px.AttributeValueInvalid,
    px.KeyIndigestible,
    px.KeyNeeded,
    px.KeyNotNeeded,
    px.SessionReadOnly,
    px.TemplateIncomplete,
    px.TemplateInconsistent,
    px.TokenWriteProtected,
)
# The data given with the key.
_INPUT = (px.DataInvalid, px.DataLenRange, px.EncryptedDataInvalid, px.EncryptedDataLenRange)


def hsm_error(exc: px.PKCS11Error, what: str) -> HsmError:
    """The `hsm.errors` class a token error means for the caller of `what`: transient
    (`HsmUnavailable`), misconfiguration (an `HsmMisconfigured` class) or refused data;
    a code none of the families names stays a bare `HsmError` (unclassified)."""
    name = type(exc).__name__
    if isinstance(exc, _UNAVAILABLE):
        return HsmUnavailable(f"{what}: the token failed ({name})")
    if isinstance(exc, _KEY_USAGE):
        return KeyUsageError(f"{what}: the key's attributes do not permit the operation ({name})")
    if isinstance(exc, _KEY_TYPE):
        return KeyTypeError(f"{what}: the key's type does not fit the mechanism ({name})")
    if isinstance(exc, _KEY_LENGTH):
        return KeyLengthError(f"{what}: the key's length does not fit the mechanism ({name})")
    if isinstance(exc, _ALGORITHM):
        return AlgorithmUnavailable(f"{what}: the token does not offer the mechanism ({name})")
    if isinstance(exc, _TOKEN_POLICY):
        return HsmMisconfigured(f"{what}: the token's policy refuses the operation ({name})")
    if isinstance(exc, _INPUT):
        return DataLengthError(f"{what}: the token refused the data length ({name})")
    return HsmError(f"{what}: the token refused the operation ({name})")
