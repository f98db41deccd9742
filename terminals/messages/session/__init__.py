"""Sign-in session messages: sign_in (9001) and sign_out (9002), as in engine.txn.session."""
