"""Benchmark fixtures: one session pcscd for every benchmark module (a fixture
imported into two modules would be two session fixtures, and the second pcscd
would find the first one running)."""

from tests.pcsc_support import insert_card, key_env, pcscd, population

__all__ = ["insert_card", "key_env", "pcscd", "population"]
