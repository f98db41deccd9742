"""The settlement wire protocol as terminals see it: the envelope and per-transaction
message Structs (by `infno`), result codes, request signing, the client SDK for HIS and
POS integrators, and the card agent that runs beside a workstation's reader.

Never imports `engine`, so an integrator can install the SDK without the server.
"""
