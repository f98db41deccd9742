"""The fuzz tests run against the same kind of deployment as the e2e tests."""

from tests.e2e.conftest import deployment

__all__ = ["deployment"]
