"""ECDSA P-256 / SHA-256 known answer through the soft HSM: RFC 6979 Appendix A.2.5
(curve P-256, message "sample", SHA-256). ECDSA signing is randomised, so the known
answer pins verification: the published (r, s) verifies under the published key, and
the same signature with one bit changed, or over another message, does not."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from hsm.keystore import KeyStore, KeyType
from hsm.protocol import KeyRef
from hsm.soft import SoftHsm
from hsm.soft_admin import entry

PRIVATE_X = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
PUBLIC_UX = 0x60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6
R = 0xEFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716
S = 0xF7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8
T = 1.0


@pytest.fixture
def hsm() -> SoftHsm:
    key = ec.derive_private_key(PRIVATE_X, ec.SECP256R1())
    assert key.public_key().public_numbers().x == PUBLIC_UX  # the RFC's own key pair
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return SoftHsm(KeyStore([entry("rfc6979.p256", KeyType.ec_p256, "test", der)]))


async def test_rfc6979_p256_sha256_signature_verifies(hsm: SoftHsm) -> None:
    signature = encode_dss_signature(R, S)
    ref = KeyRef("rfc6979.p256")
    assert await hsm.verify_signature(ref, b"sample", signature, deadline_s=T) is True
    assert await hsm.verify_signature(ref, b"test", signature, deadline_s=T) is False
    flipped = encode_dss_signature(R, S ^ 1)
    assert await hsm.verify_signature(ref, b"sample", flipped, deadline_s=T) is False
