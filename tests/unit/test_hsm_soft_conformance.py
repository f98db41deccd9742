"""The soft backend passes the shared HSM conformance suite."""

from __future__ import annotations

import pytest

from hsm.keystore import KeyStore
from hsm.soft import SoftHsm
from tests.hsm_conformance import HsmConformance, TerminalMacConformance, conformance_key_entries


class TestSoftConformance(HsmConformance, TerminalMacConformance):
    @pytest.fixture
    def hsm(self) -> SoftHsm:
        return SoftHsm(KeyStore(conformance_key_entries()))
