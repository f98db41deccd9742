"""Exception classes of the HSM boundary: the primitives, every backend and the wire.

Every refusal is one of these classes with a message that says what was wrong and
where (which argument, which field of a key block, which key label), so that an
operator can fix the caller or the configuration without a debugger.

Three families, by what the caller should do (REVIEW.md §5, DESIGN.md §2):

    HsmUnavailable     the HSM cannot answer now (unreachable, timed out, token or
                       session lost, too busy): the same call may succeed later, so
                       the engine answers "try again" (503 + Retry-After).
    HsmMisconfigured   the HSM answered, and will answer the same way to every retry:
                       no key with that label or version (KeyNotFound), a key of the
                       wrong type or length for the operation (KeyTypeError,
                       KeyLengthError), a key whose usage or attributes forbid it
                       (KeyUsageError), an algorithm the HSM cannot run
                       (AlgorithmUnavailable), a peer that does not speak this
                       protocol. Keys are named by the server's configuration, never
                       by a client, so at request time these are the operator's to fix.
    HsmInputError      the data given with a key (not the key) is refused: lengths,
                       formats, PIN blocks, key blocks.

`VerificationFailed` is none of them: a MAC or cryptogram that does not match is a
business outcome, raised by the primitives and turned into `False` by every backend's
verify operation. A bare `HsmError` is a refusal nobody classified (a token error
code without a meaning here, a remote HSM's internal error); callers must not assume
it clears.

Invariant kept by every raiser in `hsm/`: a message names lengths, field names, key
labels, key algorithms and positions, and never contains key material, a PIN, a clear
PIN block, a MAC or cryptogram value, or any byte derived from a key.
"""

from __future__ import annotations


class HsmError(Exception):
    """Base class: the HSM refused an operation; the message says why."""


# -- transient ------------------------------------------------------------------------


class HsmUnavailable(HsmError):
    """The HSM did not answer within the deadline, is not reachable, or lost the
    token or session it works with: retry later (or fail over)."""


# -- configuration: retrying does not help ----------------------------------------------


class HsmMisconfigured(HsmError):
    """The HSM refuses the operation because of how it or its keys are set up; every
    retry gets the same answer until an operator changes the configuration."""


class KeyNotFound(HsmMisconfigured):
    """No key with that label (and version) in this HSM."""


class KeyTypeError(HsmMisconfigured):
    """The key's algorithm does not fit the operation (an AES key given to a 3DES MAC,
    a TDES key-block protection key for a version "D" key block, single DES where
    double-length 3DES is required)."""


class KeyLengthError(HsmMisconfigured):
    """The key has a length its algorithm or the operation does not allow."""


class KeyUsageError(HsmMisconfigured):
    """The key exists and has the right type, but its usage or attributes do not
    permit the operation (a PKCS#11 key without CKA_DERIVE asked to derive, without
    CKA_SIGN asked for a MAC)."""


class AlgorithmUnavailable(HsmMisconfigured):
    """The installed cryptographic library or token cannot run the algorithm (for
    example SM4 missing from the OpenSSL that `cryptography` was built with)."""


# -- the data, not the key --------------------------------------------------------------


class HsmInputError(HsmError):
    """Data given with the key is refused (the key itself is fine)."""


class DataLengthError(HsmInputError):
    """An input is too short, too long or not a whole number of cipher blocks."""


class DataFormatError(HsmInputError):
    """An input has the right length but the wrong content: a PAN or PIN with a
    non-digit, a control field that names another format, a wrong filler."""


class PinBlockError(DataFormatError):
    """A decrypted PIN block is not a valid block of the expected ISO 9564 format.

    Raised after decryption, so the message names only the failing check (control
    field, PIN length field, filler), never the digits."""


class KeyBlockError(HsmInputError):
    """A TR-31 / ANSI X9.143 key block is malformed, corrupted or tampered with; the
    message names the part (length field, version, key usage, optional block, key
    data, MAC)."""


# -- a business outcome -----------------------------------------------------------------


class VerificationFailed(HsmError):
    """A MAC or cryptogram that a function was asked to verify does not match."""
