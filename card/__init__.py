"""Card access: ISO 7816-4 APDUs, BER-TLV, PC/SC and in-memory readers, the social
security (SSSE) application flows, the financial (PBOC/EMV) application and e-card
QR tokens.

Depends on the `hsm` protocol only; knows nothing of HTTP, the database or the engine.
"""
