"""Open-loop load generator, scenarios and reports (percentiles, plots), and the
side-by-side pgbench baseline that measures the machine's own limit.

Test rig only: no production package imports `loadtest`.
"""
