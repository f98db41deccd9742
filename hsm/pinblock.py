"""ISO 9564-1 PIN blocks: format 0 (8 bytes, 3DES) and format 4 (16 bytes, AES), and
the translation of an enciphered format 0 block from one key to another, entirely
inside these functions (DESIGN.md §4: online PIN blocks are only ever translated
inside the HSM).

Formats:
    format 0 clear block = PIN field XOR PAN field, where
        PIN field = 0 | N | PIN digits | F fill, 16 nibbles (N = PIN length, 4..12);
        PAN field = 0000 | the 12 rightmost PAN digits excluding the check digit.
    format 4 enciphered block = AES(K, AES(K, PIN field) XOR PAN field), where
        PIN field = 4 | N | PIN digits | A fill to 16 nibbles, then 8 random bytes;
        PAN field = M | PAN (left-padded with 0 to 12 digits) | 0 fill, 32 nibbles,
        M = PAN length - 12 (0 if shorter).

Invariants:
- a PIN is 4..12 ASCII digits, a PAN 13..19 digits for format 0 and 1..19 for
  format 4; anything else is refused before any key is used;
- every decoded block is validated (control field, length nibble, digits, filler)
  and a failure raises `PinBlockError` naming the failed check only: no message,
  repr or exception ever contains a PIN digit or a clear PIN block;
- translation refuses to re-encipher a block that does not decode as a valid format
  0 block for the given PAN, so the translate function is no decryption oracle;
- the random fill of format 4 comes from the caller (`fill`), so the functions stay
  pure and tests can replay published vectors.
"""

from __future__ import annotations

from hsm.ciphers import decrypt_ecb, encrypt_ecb
from hsm.errors import DataFormatError, DataLengthError, PinBlockError
from hsm.keys import Algorithm, SecretKey, require

PIN_DIGITS_MIN = 4
PIN_DIGITS_MAX = 12
FORMAT0_PAN_DIGITS_MIN = 13
FORMAT4_PAN_DIGITS_MIN = 1
PAN_DIGITS_MAX = 19
FORMAT4_FILL_BYTES = 8


def _check_pin(pin: str) -> str:
    if not isinstance(pin, str) or not pin.isascii() or not pin.isdigit():
        raise DataFormatError("PIN must be a string of decimal digits")
    if not PIN_DIGITS_MIN <= len(pin) <= PIN_DIGITS_MAX:
        raise DataLengthError(
            f"PIN must be {PIN_DIGITS_MIN}..{PIN_DIGITS_MAX} digits, got {len(pin)}"
        )
    return pin


def _check_pan(pan: str, minimum: int) -> str:
    if not isinstance(pan, str) or not pan.isascii() or not pan.isdigit():
        raise DataFormatError("PAN must be a string of decimal digits")
    if not minimum <= len(pan) <= PAN_DIGITS_MAX:
        raise DataLengthError(f"PAN must be {minimum}..{PAN_DIGITS_MAX} digits, got {len(pan)}")
    return pan


def _check_block(block: bytes, length: int, what: str) -> bytes:
    if not isinstance(block, bytes | bytearray) or len(block) != length:
        got = len(block) if isinstance(block, bytes | bytearray) else type(block).__name__
        raise DataLengthError(f"{what} must be {length} bytes, got {got}")
    return bytes(block)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _format0_pan_field(pan: str) -> bytes:
    pan = _check_pan(pan, FORMAT0_PAN_DIGITS_MIN)
    return bytes.fromhex("0000" + pan[-13:-1])


def _decode_pin_field(nibbles: str, control: str, fill: str) -> str:
    """Validate a PIN field's 16 hex nibbles; return the PIN digits."""
    if nibbles[0] != control:
        raise PinBlockError(f"PIN block control field is not {control} (wrong format or key)")
    length = int(nibbles[1], 16)
    if not PIN_DIGITS_MIN <= length <= PIN_DIGITS_MAX:
        raise PinBlockError("PIN block length field is outside 4..12 (wrong format or key)")
    pin = nibbles[2 : 2 + length]
    if not pin.isdigit():
        raise PinBlockError("PIN block digits are not all decimal (wrong format or key)")
    if nibbles[2 + length :] != fill * (14 - length):
        raise PinBlockError(f"PIN block filler is not all {fill} (wrong format or key)")
    return pin


def encode_format0(pin: str, pan: str) -> bytes:
    """The clear ISO 9564 format 0 block (8 bytes) of `pin` for account `pan`."""
    pin = _check_pin(pin)
    pin_field = bytes.fromhex(f"0{len(pin):X}{pin}".ljust(16, "F"))
    return _xor(pin_field, _format0_pan_field(pan))


def decode_format0(block: bytes, pan: str) -> str:
    """The PIN in a clear format 0 block, after validating every field."""
    block = _check_block(block, 8, "format 0 PIN block")
    pin_field = _xor(block, _format0_pan_field(pan))
    return _decode_pin_field(pin_field.hex().upper(), "0", "F")


def _require_tdes(key: SecretKey, operation: str) -> None:
    require(key, Algorithm.TDES, operation=operation)


def encrypt_format0(key: SecretKey, pin: str, pan: str) -> bytes:
    """The format 0 block enciphered under a 3DES PIN key (3DES-ECB)."""
    _require_tdes(key, "format 0 PIN block encipherment")
    return encrypt_ecb(key, encode_format0(pin, pan))


def decrypt_format0(key: SecretKey, block: bytes, pan: str) -> str:
    """Decipher and validate a format 0 block; the PIN on success."""
    _require_tdes(key, "format 0 PIN block decipherment")
    clear = decrypt_ecb(key, _check_block(block, 8, "enciphered format 0 PIN block"))
    return decode_format0(clear, pan)


def translate_format0(block: bytes, from_key: SecretKey, to_key: SecretKey, *, pan: str) -> bytes:
    """Re-encipher a format 0 block from `from_key` to `to_key` (both 3DES).

    The block is deciphered and fully validated for `pan` first; an invalid block is
    refused with `PinBlockError` and nothing is enciphered under `to_key`."""
    _require_tdes(from_key, "PIN translation (source key)")
    _require_tdes(to_key, "PIN translation (destination key)")
    clear = decrypt_ecb(from_key, _check_block(block, 8, "enciphered format 0 PIN block"))
    decode_format0(clear, pan)  # validation only; the digits are dropped here
    return encrypt_ecb(to_key, clear)


def format4_pin_field(pin: str, fill: bytes) -> bytes:
    """The 16-byte format 4 plaintext PIN field with the caller's 8 random bytes."""
    pin = _check_pin(pin)
    fill = _check_block(fill, FORMAT4_FILL_BYTES, "format 4 random fill")
    return bytes.fromhex(f"4{len(pin):X}{pin}".ljust(16, "A")) + fill


def format4_pan_field(pan: str) -> bytes:
    """The 16-byte format 4 PAN field."""
    pan = _check_pan(pan, FORMAT4_PAN_DIGITS_MIN)
    m = max(len(pan) - 12, 0)
    return bytes.fromhex(f"{m}{pan.rjust(12, '0')}".ljust(32, "0"))


def _require_aes(key: SecretKey, operation: str) -> None:
    require(key, Algorithm.AES, operation=operation)


def encrypt_format4(key: SecretKey, pin: str, pan: str, *, fill: bytes) -> bytes:
    """The enciphered format 4 block (16 bytes) under an AES PIN key."""
    _require_aes(key, "format 4 PIN block encipherment")
    intermediate = encrypt_ecb(key, format4_pin_field(pin, fill))
    return encrypt_ecb(key, _xor(intermediate, format4_pan_field(pan)))


def decrypt_format4(key: SecretKey, block: bytes, pan: str) -> str:
    """Decipher and validate a format 4 block; the PIN on success."""
    _require_aes(key, "format 4 PIN block decipherment")
    block = _check_block(block, 16, "enciphered format 4 PIN block")
    intermediate = decrypt_ecb(key, block)
    pin_field = decrypt_ecb(key, _xor(intermediate, format4_pan_field(pan)))
    return _decode_pin_field(pin_field[:8].hex().upper(), "4", "A")


def translate_format4(block: bytes, from_key: SecretKey, to_key: SecretKey, *, pan: str) -> bytes:
    """Re-encipher a format 4 block from `from_key` to `to_key` (both AES).

    The plaintext PIN field (PIN and the original random fill) is recovered and fully
    validated for `pan` first, then enciphered under `to_key`; an invalid block is
    refused with `PinBlockError` and nothing is enciphered under `to_key`."""
    _require_aes(from_key, "format 4 PIN translation (source key)")
    _require_aes(to_key, "format 4 PIN translation (destination key)")
    block = _check_block(block, 16, "enciphered format 4 PIN block")
    pan_field = format4_pan_field(pan)
    pin_field = decrypt_ecb(from_key, _xor(decrypt_ecb(from_key, block), pan_field))
    _decode_pin_field(pin_field[:8].hex().upper(), "4", "A")  # validation only
    return encrypt_ecb(to_key, _xor(encrypt_ecb(to_key, pin_field), pan_field))


def decode_format4_field(pin_field: bytes) -> str:
    """The PIN in a clear 16-byte format 4 PIN field, after validating it."""
    pin_field = _check_block(pin_field, 16, "format 4 PIN field")
    return _decode_pin_field(pin_field[:8].hex().upper(), "4", "A")
