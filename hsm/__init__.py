"""The `Hsm` protocol and its backends (software, PKCS#11, remote payShield-style
client), key blocks and key diversification. Callers name keys by label and version
and never see key material.

Imports nothing else of ours.
"""
