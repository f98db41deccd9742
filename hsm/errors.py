"""Exception classes of the cryptographic primitives that run inside the HSM boundary.

Every bad input is refused with one of these classes and a message that says what was
wrong and where (which argument, which field of a key block), so that an operator can
fix the caller without a debugger.

Invariant kept by every raiser in `hsm/`: a message names lengths, field names, key
algorithms and positions, and never contains key material, a PIN, a clear PIN block,
a MAC or cryptogram value, or any byte derived from a key.
"""

from __future__ import annotations


class HsmError(Exception):
    """Base class: the HSM refused an operation; the message says why."""


class KeyTypeError(HsmError):
    """The key's algorithm does not fit the operation (an AES key given to a 3DES MAC,
    a TDES key-block protection key for a version "D" key block, single DES where
    double-length 3DES is required)."""


class KeyLengthError(HsmError):
    """The key has a length its algorithm or the operation does not allow."""


class DataLengthError(HsmError):
    """An input is too short, too long or not a whole number of cipher blocks."""


class DataFormatError(HsmError):
    """An input has the right length but the wrong content: a PAN or PIN with a
    non-digit, a control field that names another format, a wrong filler."""


class PinBlockError(DataFormatError):
    """A decrypted PIN block is not a valid block of the expected ISO 9564 format.

    Raised after decryption, so the message names only the failing check (control
    field, PIN length field, filler), never the digits."""


class KeyBlockError(HsmError):
    """A TR-31 / ANSI X9.143 key block is malformed, corrupted or tampered with; the
    message names the part (length field, version, key usage, optional block, key
    data, MAC)."""


class VerificationFailed(HsmError):
    """A MAC or cryptogram that a function was asked to verify does not match."""


class AlgorithmUnavailable(HsmError):
    """The installed cryptographic library cannot run the algorithm (for example SM4
    missing from the OpenSSL that `cryptography` was built with)."""
