"""The operator's sign-in session (DOMAIN.md §2.5), one module per transaction code:
sign_in (9001), sign_out (9002)."""
