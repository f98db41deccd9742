"""The `remote` backend: the `Hsm` protocol as a client of a network HSM speaking the
payShield-style command protocol of `hsm.remote_wire` (served in development by
`simulators.hsm_server`).

Invariants:
- at most `pool_size` TCP connections, each carrying one request at a time; a reply
  must echo the request's header and answer its command code, else the connection is
  dropped and the call fails with `RemoteProtocolError`;
- `deadline_s` bounds the whole call: waiting for a free connection, connecting,
  sending and receiving; a call that misses it raises `HsmUnavailable`, as does a
  connection that breaks, so a dead server never hangs a caller;
- a connection that failed, timed out or was cancelled mid-call is closed, never
  reused; the next call opens a new one. A pooled connection found dead when reused
  (the server restarted meanwhile) is replaced once within the same deadline, which is
  safe because no HSM command changes state;
- errors come back as the classes the soft backend raises (`KeyNotFound`,
  `KeyTypeError`, `DataLengthError`...), and verify commands return False on a
  mismatch; inputs the wire cannot carry are refused before anything is sent. What is
  transient and what is misconfiguration (hsm.errors) follows the wire's error table
  (hsm.remote_wire): a refused or lost connection and a missed deadline are
  `HsmUnavailable`; a reply that is not this protocol is `RemoteProtocolError`, a
  misconfiguration (wrong port, or client and server of different versions).

Latency: asyncio and uvloop set TCP_NODELAY on every TCP transport (both ends read 1
with getsockopt) and a message leaves in one write, so no Nagle / delayed-ACK stall
(40 ms) can occur. With one request in flight a round trip is two process wake-ups
plus ~20 µs of framing (hsm.remote_wire) and the operation: on these 2-vCPU VMs a
wake-up on the other core costs ~50-100 µs, on the same core ~25 µs; requests in
flight on several connections overlap those waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools

from hsm.errors import DataLengthError
from hsm.keystore import LABEL_RE
from hsm.protocol import HsmUnavailable, KeyInfo, KeyNotFound, KeyRef, MacAlgorithm
from hsm.remote_wire import (
    MAX_MESSAGE_BYTES,
    RANDOM_MAX,
    SPECS,
    VERSION_DIGITS,
    Command,
    ErrorCode,
    RemoteProtocolError,
    Reply,
    Request,
    Value,
    decode_reply,
    encode_request,
    exception_for,
    read_payload,
    reply_code,
)

POOL_SIZE_DEFAULT = 4
POOL_SIZE_MAX = 64


class ClientState(enum.Enum):
    open = "open"
    closed = "closed"


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def dead(self) -> bool:
        return self.reader.at_eof() or self.writer.is_closing()


class _Stale(Exception):
    """A reused connection broke before any reply byte: retry on a fresh one."""


class RemoteHsm:
    backend = "remote"

    def __init__(self, host: str, port: int, *, pool_size: int = POOL_SIZE_DEFAULT) -> None:
        if not 1 <= pool_size <= POOL_SIZE_MAX:
            raise ValueError(f"pool_size must be 1..{POOL_SIZE_MAX}, got {pool_size}")
        self.host, self.port, self.pool_size = host, port, pool_size
        self.state = ClientState.open
        self._slots = asyncio.Semaphore(pool_size)
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()
        self._headers = itertools.count()

    def __repr__(self) -> str:
        return f"RemoteHsm({self.host}:{self.port}, pool {self.pool_size}, {self.state.value})"

    # -- transport -----------------------------------------------------------------------

    async def _connect(self) -> _Connection:
        try:
            reader, writer = await asyncio.open_connection(
                self.host, self.port, limit=MAX_MESSAGE_BYTES
            )
        except OSError as exc:
            raise HsmUnavailable(
                f"remote HSM {self.host}:{self.port}: cannot connect ({exc.strerror or exc})"
            ) from exc
        conn = _Connection(reader, writer)
        self._all.add(conn)
        return conn

    def _discard(self, conn: _Connection) -> None:
        self._all.discard(conn)
        conn.writer.close()

    async def _exchange(
        self, conn: _Connection, request: Request, message: bytes, reused: bool
    ) -> Reply:
        ok = False
        try:
            conn.writer.write(message)
            await conn.writer.drain()
            reply = decode_reply(await read_payload(conn.reader))
            if reply.header != request.header or reply.code != reply_code(request.command):
                raise RemoteProtocolError(
                    f"reply {reply.header}/{reply.code} does not answer request"
                    f" {request.header}/{request.command.value}"
                )
            ok = True
            return reply
        except (OSError, asyncio.IncompleteReadError) as exc:
            if reused and not (isinstance(exc, asyncio.IncompleteReadError) and exc.partial):
                raise _Stale from exc
            raise HsmUnavailable(
                f"remote HSM {self.host}:{self.port}: connection lost ({type(exc).__name__})"
            ) from exc
        finally:
            if ok and self.state is ClientState.open:
                self._idle.append(conn)
            else:
                self._discard(conn)

    async def _round_trip(self, request: Request, message: bytes) -> Reply:
        while self._idle:
            conn = self._idle.pop()
            if conn.dead():
                self._discard(conn)
                continue
            try:
                return await self._exchange(conn, request, message, reused=True)
            except _Stale:
                break  # the server went away since: one fresh connection below
        return await self._exchange(await self._connect(), request, message, reused=False)

    async def _call(self, command: Command, args: tuple[Value, ...], deadline_s: float) -> Reply:
        if self.state is not ClientState.open:
            raise HsmUnavailable(f"remote HSM client {self.host}:{self.port} is closed")
        for arg in args:
            if isinstance(arg, KeyRef):
                _check_key(arg)
        request = Request(f"{next(self._headers) % 10_000:04d}", command, args)
        message = encode_request(request)  # what the wire cannot carry fails before any I/O
        try:
            async with asyncio.timeout(deadline_s), self._slots:
                return await self._round_trip(request, message)
        except TimeoutError:
            raise HsmUnavailable(
                f"remote HSM {self.host}:{self.port}: no answer within {deadline_s} s"
            ) from None

    async def _value(self, command: Command, args: tuple[Value, ...], deadline_s: float) -> Value:
        reply = await self._call(command, args, deadline_s)
        if reply.error is not ErrorCode.ok:
            raise exception_for(reply.error, reply.message)
        return reply.values[0]

    async def _bytes(self, command: Command, args: tuple[Value, ...], deadline_s: float) -> bytes:
        value = await self._value(command, args, deadline_s)
        if not isinstance(value, bytes):
            raise RemoteProtocolError(f"{command.name}: reply value is not bytes")
        return value

    async def _verify(self, command: Command, args: tuple[Value, ...], deadline_s: float) -> bool:
        if not SPECS[command].verify:  # a bug in this module, never a wire condition
            raise AssertionError(f"{command.name} is not a verify command")
        reply = await self._call(command, args, deadline_s)
        if reply.error is ErrorCode.ok:
            return True
        if reply.error is ErrorCode.verification_failed:
            return False
        raise exception_for(reply.error, reply.message)

    # -- the Hsm protocol ----------------------------------------------------------------

    async def random_bytes(self, n: int, *, deadline_s: float) -> bytes:
        if not 1 <= n <= RANDOM_MAX:
            raise DataLengthError(f"random_bytes: n must be 1..{RANDOM_MAX}, got {n}")
        return await self._bytes(Command.random_bytes, (n,), deadline_s)

    async def verify_card_cryptogram(
        self,
        master: KeyRef,
        card_sn: bytes,
        process_factor: bytes,
        challenge: bytes,
        cryptogram: bytes,
        *,
        deadline_s: float,
    ) -> bool:
        args = (master, card_sn, process_factor, challenge, cryptogram)
        return await self._verify(Command.verify_card_cryptogram, args, deadline_s)

    async def external_auth_cryptogram(
        self,
        master: KeyRef,
        card_sn: bytes,
        process_factor: bytes,
        challenge: bytes,
        *,
        deadline_s: float,
    ) -> bytes:
        args = (master, card_sn, process_factor, challenge)
        return await self._bytes(Command.external_auth_cryptogram, args, deadline_s)

    async def mac_generate(
        self, key: KeyRef, algorithm: MacAlgorithm, data: bytes, *, deadline_s: float
    ) -> bytes:
        return await self._bytes(Command.mac_generate, (key, algorithm, data), deadline_s)

    async def mac_verify(
        self, key: KeyRef, algorithm: MacAlgorithm, data: bytes, mac: bytes, *, deadline_s: float
    ) -> bool:
        return await self._verify(Command.mac_verify, (key, algorithm, data, mac), deadline_s)

    async def verify_terminal_mac(
        self, master: KeyRef, terminal_id: str, message: bytes, mac: bytes, *, deadline_s: float
    ) -> bool:
        args = (master, terminal_id, message, mac)
        return await self._verify(Command.verify_terminal_mac, args, deadline_s)

    async def verify_arqc(
        self,
        issuer_master: KeyRef,
        pan: str,
        psn: str,
        atc: bytes,
        data: bytes,
        arqc: bytes,
        *,
        deadline_s: float,
    ) -> bool:
        args = (issuer_master, pan, psn, atc, data, arqc)
        return await self._verify(Command.verify_arqc, args, deadline_s)

    async def arpc_method_1(
        self,
        issuer_master: KeyRef,
        pan: str,
        psn: str,
        atc: bytes,
        arqc: bytes,
        arc: bytes,
        *,
        deadline_s: float,
    ) -> bytes:
        args = (issuer_master, pan, psn, atc, arqc, arc)
        return await self._bytes(Command.arpc_method_1, args, deadline_s)

    async def arpc_method_2(
        self,
        issuer_master: KeyRef,
        pan: str,
        psn: str,
        atc: bytes,
        arqc: bytes,
        csu: bytes,
        proprietary_data: bytes,
        *,
        deadline_s: float,
    ) -> bytes:
        args = (issuer_master, pan, psn, atc, arqc, csu, proprietary_data)
        return await self._bytes(Command.arpc_method_2, args, deadline_s)

    async def translate_pin_format4(
        self, from_key: KeyRef, to_key: KeyRef, block: bytes, pan: str, *, deadline_s: float
    ) -> bytes:
        args = (from_key, to_key, block, pan)
        return await self._bytes(Command.translate_pin_format4, args, deadline_s)

    async def translate_pin_format0(
        self, from_key: KeyRef, to_key: KeyRef, block: bytes, pan: str, *, deadline_s: float
    ) -> bytes:
        args = (from_key, to_key, block, pan)
        return await self._bytes(Command.translate_pin_format0, args, deadline_s)

    async def sign(self, key: KeyRef, data: bytes, *, deadline_s: float) -> bytes:
        return await self._bytes(Command.sign, (key, data), deadline_s)

    async def verify_signature(
        self, key: KeyRef, data: bytes, signature: bytes, *, deadline_s: float
    ) -> bool:
        return await self._verify(Command.verify_signature, (key, data, signature), deadline_s)

    async def list_keys(self, *, deadline_s: float) -> list[KeyInfo]:
        value = await self._value(Command.list_keys, (), deadline_s)
        if not isinstance(value, tuple):
            raise RemoteProtocolError("list_keys: reply value is not a key list")
        return list(value)

    async def close(self) -> None:
        """Close every connection; calls in flight fail with HsmUnavailable. Idempotent."""
        self.state = ClientState.closed
        conns, self._idle = list(self._all), []
        self._all.clear()
        for conn in conns:
            conn.writer.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                await conn.writer.wait_closed()


def _check_key(ref: KeyRef) -> None:
    """No key can have a label or version the key store refuses: same answer as the
    soft backend (KeyNotFound), without a round trip."""
    if not LABEL_RE.match(ref.label):
        raise KeyNotFound(f"no key labelled {ref.label!r}")
    if ref.version is not None and not 1 <= ref.version < 10**VERSION_DIGITS:
        raise KeyNotFound(f"no key {ref.label!r} version {ref.version}")
