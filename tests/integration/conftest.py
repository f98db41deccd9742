"""Integration fixtures: the session's real pcscd with the vsmartcard virtual reader
and virtual cards inserted into it (tests/pcsc_support.py)."""

from tests.pcsc_support import insert_card, key_env, pcscd, population

__all__ = ["insert_card", "key_env", "pcscd", "population"]
