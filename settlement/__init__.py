"""The medical-insurance domain: persons, schemes, policy parameters, catalog,
adjudication (pure functions over integer fen), ledger postings, visit and settlement
state machines, reversal, reconciliation, clearing and bank payments.

Never imports `engine` or `terminals`: the domain does not know HTTP exists.
"""
