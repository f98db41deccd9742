"""Virtual social security cards: one chip with the social security application
(SSSE, `ssse.py`) and the financial application (PBOC debit, `pboc.py`) behind one
ISO 7816-4 command dispatcher (`card.py`), personalised from the synthetic population
with per-card keys diversified from the issuer master keys in the demo key file
(`keys.py`, `factory.py`). `simulators.vpicc` serves one to a real pcscd.
"""
