"""The card agent: the local service a HIS workstation or a kiosk runs beside its card
reader. It reads the social security card, has the engine issue a challenge (9301),
lets the card answer it (INTERNAL AUTHENTICATE), performs the generation-3 EXTERNAL
AUTHENTICATE with the cryptogram the engine's HSM computed, verifies the PIN when
asked, and calls 1101 with the card data and cryptogram. The HIS talks to it over a
small HTTP API bound to localhost (`http.py`); `core.py` holds the flow and can be
embedded directly (the HIS simulator does).
"""
