"""Hardware and partner simulators that let the whole system run on one machine:
virtual cards behind vpcd, the HSM service, HIS / pharmacy POS / kiosk / bank
simulators, the synthetic population generator, and the `make demo` driver.

Test rigs only: no production package imports `simulators`.
"""
