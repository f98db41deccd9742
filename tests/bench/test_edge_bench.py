"""The edge's body check per request (run by `make bench`, not by `make test`): a clean
2204 with 50 fee lines (the fields tests/e2e/helpers.fee_line sets, 13 KB) through
`engine.edge.check_body`, beside what it is made of — one msgspec decode and
re-encode — and the exact tier alone, which a clean body never reaches. Pin to one
core for per-core figures (`taskset -c 1 make bench`)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from engine import edge
from tests.unit.test_edge import body_2204


@pytest.fixture(scope="module")
def body() -> bytes:
    return body_2204(50)


def test_check_of_a_clean_2204(benchmark: Any, body: bytes) -> None:
    assert benchmark(edge.check_body, body) is None


def test_msgspec_decode_and_encode_of_it(benchmark: Any, body: bytes) -> None:
    benchmark(lambda: msgspec.json.encode(msgspec.json.decode(body)))


def test_exact_tier_alone_on_it(benchmark: Any, body: bytes) -> None:
    assert benchmark(edge._examine, body) is None
