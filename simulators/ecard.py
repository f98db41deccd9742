"""The e-card issuing platform: issues a person's dynamic QR token (the e-certificate a
patient shows on a phone), signed with ECDSA P-256 under the HSM key "ecard.sign"
through the `Hsm` protocol's `sign` — so it runs against the soft key file the
engine's HSM uses, or any other backend. Token format: card.ecard.

Each token has a fresh random id (the national ecToken goes into `mdtrt_cert_no`, at
most 40 characters), is valid ECARD_TOKEN_LIFETIME_S (60 s) from issue, and may be
used once. Time and randomness are injected so that tests can issue tokens in the
past or replay a run.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from card.ecard import (
    ECARD_TOKEN_LIFETIME_S,
    EcardPayload,
    ecard_signing_input,
    encode_ecard_token,
)
from hsm.keystore import KeyStore, load_master_key
from hsm.protocol import Hsm, KeyRef
from hsm.soft import SoftHsm
from simulators.population import Person

SIGNING_KEY = KeyRef("ecard.sign")
TOKEN_ID_BYTES = 16  # 32 hex digits: well inside the 40-character ecToken


@dataclass(frozen=True)
class IssuedToken:
    token_id: str  # for mdtrt_cert_no
    qr: str  # the whole QR text, for yk_ecard_qr
    payload: EcardPayload

    def __repr__(self) -> str:
        return f"IssuedToken(token_id={self.token_id[:6]}..., exp={self.payload.exp})"


class EcardPlatform:
    def __init__(
        self,
        hsm: Hsm,
        *,
        key: KeyRef = SIGNING_KEY,
        deadline_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._hsm = hsm
        self._key = key
        self._deadline_s = deadline_s
        self._clock = clock
        self._random_bytes = random_bytes

    def payload_for(
        self,
        person: Person,
        *,
        now_s: float | None = None,
        lifetime_s: int = ECARD_TOKEN_LIFETIME_S,
    ) -> EcardPayload:
        """What a token for `person` issued at `now_s` (default: the clock) says."""
        iat = int(self._clock() if now_s is None else now_s)
        return EcardPayload(
            token_id=self._random_bytes(TOKEN_ID_BYTES).hex().upper(),
            certno=person.certno,
            psn_name=person.psn_name,
            insuplc_admdvs=person.insuplc_admdvs,
            iat=iat,
            exp=iat + lifetime_s,
        )

    async def sign(self, payload: EcardPayload) -> IssuedToken:
        """Sign any payload (tests use it for tokens a real platform would not issue)."""
        signature = await self._hsm.sign(
            self._key, ecard_signing_input(payload), deadline_s=self._deadline_s
        )
        return IssuedToken(payload.token_id, encode_ecard_token(payload, signature), payload)

    async def issue(
        self,
        person: Person,
        *,
        now_s: float | None = None,
        lifetime_s: int = ECARD_TOKEN_LIFETIME_S,
    ) -> IssuedToken:
        """A fresh QR token for `person`, valid `lifetime_s` from `now_s`."""
        return await self.sign(self.payload_for(person, now_s=now_s, lifetime_s=lifetime_s))


def platform_from_env(env: Mapping[str, str] | None = None) -> EcardPlatform:
    """The platform signing with the soft HSM over the key file named by
    YIKATONG_HSM_KEY_FILE (the demo's: the engine verifies with the same key)."""
    from simulators.keys import DEFAULT_KEY_FILE

    env = os.environ if env is None else env
    key_file = Path(env.get("YIKATONG_HSM_KEY_FILE") or DEFAULT_KEY_FILE)
    return EcardPlatform(SoftHsm(KeyStore.load(key_file, load_master_key(env))))
