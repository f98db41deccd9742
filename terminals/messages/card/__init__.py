"""Card and e-card messages: challenge (9301) and person_info (1101), as in engine.txn.card."""
