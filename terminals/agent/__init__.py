"""The card agent: the local service a HIS workstation or a kiosk runs beside its card
reader. It reads the social security card, has the engine issue a challenge (9301),
lets the card answer it (INTERNAL AUTHENTICATE), performs the generation-3 EXTERNAL
AUTHENTICATE with the cryptogram the engine's HSM computed, calls 1101 with the card
data and cryptogram, and only then verifies the PIN when asked; it also identifies
e-card holders with its terminal key. It is a privileged local service (DESIGN.md §4,
docs/CARD_AGENT.md):

- `core.py`: the flow (`CardAgent`), embeddable directly (the HIS simulator does);
- `http.py`: the HTTP API on loopback; `access.py`: who may call it (bearer token,
  loopback Host, exact origins); `token.py`: the 0600 token file;
- `results.py`: the stable outcomes; `answers.py`: the JSON answers; `audit.py`: one
  log line per card flow without personal data; `probe.py`: the engine's reachability;
- `limits.py`: every limit; `events.py`: card inserted/removed; `cli.py`: `yikatong
  agent`.
"""
