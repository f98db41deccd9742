"""Per-card keys for the virtual cards, as a card issuer's personalisation would write
them into the chip: the card's internal- and external-authentication keys
diversified from the issuer masters (`hsm.cardauth.derive_card_key`) and the EMV ICC
master key for application cryptograms (`hsm.emv.derive_icc_master_key_a`).

The masters come from the demo key file that the engine's soft HSM uses (or from
explicit key material in tests). A clone has the right data but keys of its own.
Test rigs only: production code never sees any of these keys.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hsm.cardauth import derive_card_key
from hsm.emv import derive_icc_master_key_a
from hsm.keys import SecretKey, sm4, tdes
from hsm.keystore import KeyStore, load_master_key
from simulators.keys import DEFAULT_KEY_FILE
from simulators.population import Card

PAN_SEQUENCE = "00"


@dataclass(frozen=True)
class IssuerMasters:
    """Clear issuer master keys, held by the simulated card issuer."""

    int_3des: SecretKey
    int_sm4: SecretKey
    ext_3des: SecretKey
    ext_sm4: SecretKey
    emv_imk_ac: SecretKey

    def __repr__(self) -> str:
        return "IssuerMasters(<keys hidden>)"

    @classmethod
    def from_keystore(cls, store: KeyStore) -> IssuerMasters:
        return cls(
            int_3des=tdes(store.get("card.int.3des").material),
            int_sm4=sm4(store.get("card.int.sm4").material),
            ext_3des=tdes(store.get("card.ext.3des").material),
            ext_sm4=sm4(store.get("card.ext.sm4").material),
            emv_imk_ac=tdes(store.get("emv.imk.ac").material),
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> IssuerMasters:
        """Masters from the key file named by YIKATONG_HSM_KEY_FILE (or the default),
        opened with the master key the environment names (a 0600 file by
        YIKATONG_HSM_MASTER_KEY_FILE, else YIKATONG_HSM_MASTER_KEY)."""
        env = os.environ if env is None else env
        key_file = Path(env.get("YIKATONG_HSM_KEY_FILE") or DEFAULT_KEY_FILE)
        return cls.from_keystore(KeyStore.load(key_file, load_master_key(env)))


@dataclass(frozen=True)
class CardKeys:
    internal_auth: SecretKey  # 3DES (generation 2) or SM4 (generation 3)
    external_auth: SecretKey
    icc_master_ac: SecretKey  # EMV MK_AC, double-length 3DES

    def __repr__(self) -> str:
        return "CardKeys(<keys hidden>)"


def card_keys(masters: IssuerMasters, card: Card) -> CardKeys:
    sn = bytes.fromhex(card.card_sn)
    gen3 = card.generation == 3
    return CardKeys(
        internal_auth=derive_card_key(masters.int_sm4 if gen3 else masters.int_3des, sn),
        external_auth=derive_card_key(masters.ext_sm4 if gen3 else masters.ext_3des, sn),
        icc_master_ac=derive_icc_master_key_a(masters.emv_imk_ac, card.pan, PAN_SEQUENCE),
    )


def clone_keys(card: Card, random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> CardKeys:
    """Keys a cloner would have to invent: the right kinds, the wrong values."""
    auth = sm4 if card.generation == 3 else tdes
    return CardKeys(
        internal_auth=auth(random_bytes(16)),
        external_auth=auth(random_bytes(16)),
        icc_master_ac=tdes(random_bytes(16)),
    )
