"""Transactions of the settlement protocol: one module per code, named by what it does
(`outpatient/settle.py` is 2207), routed by the one table in `routes.py`; every code is
a flow (flow.py: load → decide in settlement/ → write)."""
