"""Transactions of the settlement protocol: one module per code, named by what it does
(`outpatient/settle.py` is 2207), routed by the one table in `routes.py`. Codes on the
core's shape are flows (flow.py: load → decide → write); the rest still run as
participants (pipeline.py) until they move."""
