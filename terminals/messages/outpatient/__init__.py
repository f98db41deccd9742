"""Outpatient messages, one module per transaction code (2201-2208), as in engine.txn.outpatient."""
