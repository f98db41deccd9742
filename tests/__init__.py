"""yikatong's tests: unit, integration (real PostgreSQL, SoftHSM2, pcscd), e2e,
property, fuzz, simulation and benchmarks."""
