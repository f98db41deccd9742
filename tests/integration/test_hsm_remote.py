"""The `remote` backend against the HSM simulator over real TCP on 127.0.0.1: it passes
the shared conformance suite (same inputs, same outputs and errors as the soft backend
serving it), a server that dies or stalls mid-call gives `HsmUnavailable` within the
deadline and the client recovers by itself, injected connection drops are survived,
and many tasks share a small bounded pool."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hsm.errors import DataFormatError, DataLengthError, PinBlockError
from hsm.keystore import KeyStore
from hsm.protocol import HsmUnavailable, KeyNotFound, KeyRef, MacAlgorithm
from hsm.remote import ClientState, RemoteHsm
from hsm.remote_wire import DATA_MAX, RemoteProtocolError, read_payload
from hsm.soft import SoftHsm
from simulators.hsm_server import HsmServer, ServerState, serve
from tests.hsm_conformance import (
    PAN,
    HsmConformance,
    TerminalMacConformance,
    conformance_key_entries,
)
from tests.support import free_port, hsm_env

T = 5.0


def soft() -> SoftHsm:
    return SoftHsm(KeyStore(conformance_key_entries()))


@pytest.fixture
async def server() -> AsyncIterator[HsmServer]:
    srv = await serve(soft(), "127.0.0.1", 0)
    yield srv
    await srv.close()


@pytest.fixture
async def hsm(server: HsmServer) -> AsyncIterator[RemoteHsm]:
    client = RemoteHsm("127.0.0.1", server.port, pool_size=4)
    yield client
    await client.close()


class TestRemoteConformance(HsmConformance, TerminalMacConformance):
    """The whole shared suite through the wire (fixture `hsm` above)."""


async def test_soft_errors_come_back_as_the_same_classes(hsm: RemoteHsm) -> None:
    """Each refusal of the soft backend crosses the wire as its own class."""
    with pytest.raises(KeyNotFound):
        await hsm.sign(KeyRef("ecard.sign", 7), b"x", deadline_s=T)
    with pytest.raises(KeyNotFound):  # a label no key store accepts: refused locally
        await hsm.sign(KeyRef("no such label!"), b"x", deadline_s=T)
    with pytest.raises(DataLengthError):
        await hsm.random_bytes(0, deadline_s=T)
    with pytest.raises(DataFormatError):
        await hsm.translate_pin_format0(
            KeyRef("zpk.a"), KeyRef("zpk.b"), bytes(8), "62123456789X", deadline_s=T
        )
    with pytest.raises(PinBlockError):  # block of zeros: wrong control field after decrypt
        await hsm.translate_pin_format0(
            KeyRef("zpk.a"), KeyRef("zpk.b"), bytes(8), PAN, deadline_s=T
        )
    with pytest.raises(DataLengthError):  # more than the wire carries: nothing sent
        await hsm.sign(KeyRef("ecard.sign"), bytes(DATA_MAX + 1), deadline_s=T)
    assert await hsm.random_bytes(4096, deadline_s=T)


async def test_server_killed_mid_call_gives_unavailable_then_reconnects(
    hsm: RemoteHsm, server: HsmServer
) -> None:
    """A crash while a call waits for its answer fails that call at once (not at the
    deadline, not never); while nothing listens calls fail fast; once a server listens
    on the port again, the next call works on a fresh connection."""
    port = server.port
    await hsm.random_bytes(8, deadline_s=T)  # a pooled connection exists now
    server.latency_s = 10.0
    call = asyncio.create_task(hsm.random_bytes(8, deadline_s=T))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await server.abort()
    with pytest.raises(HsmUnavailable):
        await call
    assert time.monotonic() - started < 1.0
    with pytest.raises(HsmUnavailable, match="cannot connect"):
        await hsm.random_bytes(8, deadline_s=T)
    back = await serve(soft(), "127.0.0.1", port)
    try:
        assert len(await hsm.random_bytes(8, deadline_s=T)) == 8
    finally:
        await back.close()


async def test_server_restarted_between_calls_is_invisible(hsm: RemoteHsm) -> None:
    """Pooled connections to a server that went away are replaced within the call."""
    first = await serve(soft(), "127.0.0.1", 0)
    client = RemoteHsm("127.0.0.1", first.port, pool_size=4)
    try:
        await asyncio.gather(*(client.random_bytes(8, deadline_s=T) for _ in range(8)))
        port = first.port
        await first.abort()
        second = await serve(soft(), "127.0.0.1", port)
        try:
            results = await asyncio.gather(
                *(client.random_bytes(8, deadline_s=T) for _ in range(8))
            )
            assert all(len(r) == 8 for r in results)
        finally:
            await second.close()
    finally:
        await client.close()


async def test_latency_beyond_deadline_gives_unavailable_within_it(
    hsm: RemoteHsm, server: HsmServer
) -> None:
    """A stalled HSM costs the caller its deadline, no more; the stalled connection is
    dropped and the next call (server fast again) succeeds."""
    server.latency_s = 0.5
    started = time.monotonic()
    with pytest.raises(HsmUnavailable, match=r"no answer within 0\.2 s"):
        await hsm.mac_generate(KeyRef("mac.hmac"), MacAlgorithm.hmac_sha256, b"x", deadline_s=0.2)
    # uvloop's timers run on libuv's millisecond clock and may fire up to a tick early.
    assert 0.19 <= time.monotonic() - started < 0.5
    server.latency_s = 0.0
    assert len(await hsm.random_bytes(8, deadline_s=T)) == 8


async def test_waiting_for_a_pooled_connection_counts_against_the_deadline(
    server: HsmServer,
) -> None:
    """With one connection busy for 0.3 s, a second call with a 0.15 s deadline fails
    instead of queueing past its deadline."""
    server.latency_s = 0.3
    client = RemoteHsm("127.0.0.1", server.port, pool_size=1)
    try:
        first = asyncio.create_task(client.random_bytes(8, deadline_s=T))
        await asyncio.sleep(0.05)
        with pytest.raises(HsmUnavailable):
            await client.random_bytes(8, deadline_s=0.15)
        assert len(await first) == 8
    finally:
        await client.close()


async def test_injected_connection_drops_are_survived() -> None:
    """Every 3rd request is dropped unanswered: each drop hits a pooled connection, which
    the client replaces within the call, so all 30 calls succeed; the 30th answered
    request is the server's 44th (14 were dropped and retried)."""
    server = await serve(soft(), "127.0.0.1", 0, fail_every=3)
    client = RemoteHsm("127.0.0.1", server.port, pool_size=2)
    try:
        for _ in range(30):
            assert len(await client.random_bytes(8, deadline_s=T)) == 8
        assert server.requests == 44
    finally:
        await client.close()
        await server.close()


async def test_drop_on_a_fresh_connection_is_unavailable_and_not_sticky(
    hsm: RemoteHsm, server: HsmServer
) -> None:
    """A request dropped on a just-opened connection is not retried (the server is
    failing, not restarted): HsmUnavailable; once the server behaves, calls work."""
    server.fail_every = 1
    for _ in range(3):
        with pytest.raises(HsmUnavailable, match="connection lost"):
            await hsm.random_bytes(8, deadline_s=T)
    server.fail_every = 0
    assert len(await hsm.random_bytes(8, deadline_s=T)) == 8


async def test_many_tasks_share_a_bounded_pool(server: HsmServer) -> None:
    """200 concurrent calls through a pool of 4 all succeed, over at most 4 connections."""
    server.latency_s = 0.002
    client = RemoteHsm("127.0.0.1", server.port, pool_size=4)
    data = [bytes([i]) * 32 for i in range(200)]
    try:
        macs = await asyncio.gather(
            *(
                client.mac_generate(KeyRef("mac.aes"), MacAlgorithm.aes_cmac, d, deadline_s=T)
                for d in data
            )
        )
        want = [
            await soft().mac_generate(KeyRef("mac.aes"), MacAlgorithm.aes_cmac, d, deadline_s=T)
            for d in data
        ]
        assert macs == want
        assert server.connections_peak <= 4
    finally:
        await client.close()


async def test_server_refuses_connections_beyond_its_bound() -> None:
    """A connection over `max_connections` is closed at once: that client's call fails
    with HsmUnavailable, the others are unaffected."""
    server = await serve(soft(), "127.0.0.1", 0, max_connections=2)
    clients = [RemoteHsm("127.0.0.1", server.port, pool_size=1) for _ in range(3)]
    try:
        for client in clients[:2]:
            await client.random_bytes(8, deadline_s=T)
        with pytest.raises(HsmUnavailable):
            await clients[2].random_bytes(8, deadline_s=T)
        assert len(await clients[0].random_bytes(8, deadline_s=T)) == 8
    finally:
        for client in clients:
            await client.close()
        await server.close()


async def test_graceful_close_answers_the_request_in_flight(server: HsmServer) -> None:
    """close() lets a request already being answered finish, then refuses new ones."""
    server.latency_s = 0.2
    client = RemoteHsm("127.0.0.1", server.port, pool_size=2)
    try:
        call = asyncio.create_task(client.random_bytes(8, deadline_s=T))
        await asyncio.sleep(0.05)
        await server.close()
        assert len(await call) == 8
        assert server.state is ServerState.closed
        with pytest.raises(HsmUnavailable):
            await client.random_bytes(8, deadline_s=T)
    finally:
        await client.close()


async def test_closed_client_refuses_calls(hsm: RemoteHsm) -> None:
    await hsm.close()
    assert hsm.state is ClientState.closed
    with pytest.raises(HsmUnavailable, match="is closed"):
        await hsm.random_bytes(8, deadline_s=T)


async def test_garbage_from_a_client_does_not_hurt_the_server(
    hsm: RemoteHsm, server: HsmServer
) -> None:
    """Undecodable requests get error 69/68 or a closed connection; the server keeps
    serving everyone else."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"\x00\x08ABCDZZ\x00\x01")  # unknown command ZZ: answered 68
    assert (await asyncio.wait_for(read_payload(reader), T))[:8] == b"ABCDZA68"
    writer.write(b"\x00\x07ABCDRA\x00")  # RA with a cut field: answered 69
    assert (await asyncio.wait_for(read_payload(reader), T))[:8] == b"ABCDRB69"
    writer.write(b"\x00\x00")  # zero-length frame: connection closed
    assert await asyncio.wait_for(reader.read(), T) == b""
    writer.close()
    assert len(await hsm.random_bytes(8, deadline_s=T)) == 8


async def test_reply_not_answering_the_request_is_a_protocol_error() -> None:
    """A server that answers with another header is caught, not believed."""

    async def liar(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(2 + int.from_bytes(await reader.readexactly(2), "big") - 2)
        payload = b"ZZZZRB00" + (8).to_bytes(2, "big") + bytes(8)
        writer.write(len(payload).to_bytes(2, "big") + payload)
        await writer.drain()

    srv = await asyncio.start_server(liar, "127.0.0.1", 0)
    client = RemoteHsm("127.0.0.1", srv.sockets[0].getsockname()[1], pool_size=1)
    try:
        with pytest.raises(RemoteProtocolError, match="does not answer"):
            await client.random_bytes(8, deadline_s=T)
    finally:
        await client.close()
        srv.close()


def start_simulator(tmp: Path, port: int, *args: str) -> subprocess.Popen[bytes]:
    """`python -m simulators.hsm_server` on `port` with the demo key file; returns once
    it listens."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("YIKATONG_")}
    env.update(hsm_env(tmp))
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulators.hsm_server", "--port", str(port), *args],
        env=env,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert b"listening on" in line, line
    return proc


async def test_simulator_process_killed_mid_call(tmp_path: Path) -> None:
    """The real thing: the simulator process gets SIGKILL while answering; the call
    fails with HsmUnavailable at once, and a restarted process serves the next call."""
    port = free_port()
    proc = start_simulator(tmp_path, port, "--latency-ms", "2000")
    client = RemoteHsm("127.0.0.1", port, pool_size=2)
    try:
        call = asyncio.create_task(client.random_bytes(8, deadline_s=T))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        proc.kill()
        with pytest.raises(HsmUnavailable):
            await call
        assert time.monotonic() - started < 1.0
        proc.wait(timeout=5)
        proc = start_simulator(tmp_path, port)
        keys = await client.list_keys(deadline_s=T)
        assert "terminal.mac.master" in {k.label for k in keys}
    finally:
        await client.close()
        proc.terminate()
        assert proc.wait(timeout=5) == 0
