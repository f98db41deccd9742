"""Request signing and msgids, without a server (replays are refused by PostgreSQL:
tests/e2e/test_replay_after_restart.py and test_protocol_edge.py)."""

from __future__ import annotations

import asyncio

from terminals import signing
from terminals.client import MsgIdFactory

KEY = bytes(range(32))


def test_signature_covers_method_path_time_nonce_and_body() -> None:
    base = ("POST", "/api/v1/tx", "1764380000", "n" * 16, b'{"a":1}')
    sig = signing.signature(KEY, *base)
    assert signing.verify(KEY, *base, sig)
    for i, changed in enumerate(("GET", "/api/v1/tx2", "1764380001", "m" * 16, b'{"a":2}')):
        args = list(base)
        args[i] = changed
        assert not signing.verify(KEY, *args, sig), f"part {i} is not covered"  # type: ignore[arg-type]
    assert not signing.verify(bytes(32), *base, sig)


def test_signed_headers_carry_all_four_fields() -> None:
    headers = signing.signed_headers(
        "T1", KEY, "POST", "/p", b"x", now_s=5, nonce="abcdefghijklmnop"
    )
    assert set(headers) == {
        signing.HEADER_TERMINAL,
        signing.HEADER_TIMESTAMP,
        signing.HEADER_NONCE,
        signing.HEADER_SIGNATURE,
    }
    assert signing.SIGNATURE_RE.match(headers[signing.HEADER_SIGNATURE])
    assert signing.NONCE_RE.match(signing.new_nonce())


async def test_msgid_is_institution_time_and_sequence() -> None:
    now = [1764380000.2]
    factory = MsgIdFactory("H51010000001", clock=lambda: now[0])
    first, second = await factory.next(), await factory.next()
    assert len(first) == 30 and first.startswith("H51010000001")
    assert first[12:26] == "20251129093320"  # 2025-11-29 09:33:20 in UTC+8
    assert (first[26:], second[26:]) == ("0000", "0001")
    now[0] += 1
    assert (await factory.next())[26:] == "0000"


async def test_msgid_sequence_waits_for_the_next_second_when_exhausted() -> None:
    now = [100.0]
    factory = MsgIdFactory("H51010000001", clock=lambda: now[0])
    for _ in range(10_000):
        await factory.next()

    async def tick() -> None:
        await asyncio.sleep(0.01)
        now[0] = 101.0

    ticker = asyncio.create_task(tick())
    nxt = await factory.next()
    await ticker
    assert nxt[26:] == "0000"


async def test_msgid_slices_keep_processes_of_one_institution_apart() -> None:
    a = MsgIdFactory("H51010000001", clock=lambda: 100.0, first_seq=0, seq_count=5000)
    b = MsgIdFactory("H51010000001", clock=lambda: 100.0, first_seq=5000, seq_count=5000)
    ids = {await a.next() for _ in range(100)} | {await b.next() for _ in range(100)}
    assert len(ids) == 200


def test_clients_of_one_institution_share_one_msgid_factory() -> None:
    assert MsgIdFactory.for_institution("H51010000009") is MsgIdFactory.for_institution(
        "H51010000009"
    )
