"""Pharmacy purchases on the transaction core: 2101 pre-settle, 2102 settle, 2103 cancel."""
