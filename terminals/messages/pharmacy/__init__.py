"""Pharmacy purchases (药店购药, med_type 41): 2101 pre-settle, 2102 settle, 2103 cancel."""
