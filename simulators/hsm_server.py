"""The HSM service simulator: an asyncio TCP server answering the payShield-style
command protocol of `hsm.remote_wire` with any `Hsm` (the soft backend in practice),
so that the `remote` backend and the engine can be run and tested against a network
HSM without hardware.

Invariants:
- binds 127.0.0.1 unless told otherwise; at most `max_connections` connections at a
  time (a connection beyond that is closed at once); each connection is answered one
  request at a time, in order;
- a request whose header and code can be read always gets a reply (error 68 or 69 if
  it is unknown or malformed); bytes that cannot be framed close the connection;
- error replies carry the refusing exception's message (hsm.errors messages hold no
  secrets) or, for anything unexpected, only the exception's class name;
- test knobs: `latency_s` delays every answer; `fail_every=N` closes the connection
  without a reply on every N-th request (counted server-wide), as a crashing HSM would;
- `close()` is graceful (stops listening, lets requests being answered finish within
  a grace period, then closes every connection); `abort()` is a crash (closes
  everything at once, answering nothing). Both are idempotent.

Run as a program: `python -m simulators.hsm_server --port 1500` (key file and master key
as for the engine), on uvloop as the engine runs; `add_arguments` and `run` let the
`yikatong sim hsm` command reuse it. `--master-key-file -` reads the master key from
standard input, which is how `spawn` starts it: the process gets the key through a
pipe and an environment without secrets (hsm.secret_guard.child_env), and a master
key it did read from YIKATONG_HSM_MASTER_KEY is dropped from its environment.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import uvloop

from hsm.errors import HsmError
from hsm.keystore import (
    MASTER_KEY_ENV,
    KeyStore,
    KeyStoreError,
    load_master_key,
    parse_master_key,
)
from hsm.protocol import Hsm
from hsm.remote_wire import (
    MAX_MESSAGE_BYTES,
    SPECS,
    ErrorCode,
    RemoteProtocolError,
    Reply,
    Request,
    Value,
    clip_message,
    decode_request,
    encode_reply,
    error_code_for,
    read_payload,
    reply_code,
)
from hsm.secret_guard import child_env, drop_from_environ
from hsm.soft import SoftHsm

HOST_DEFAULT = "127.0.0.1"
PORT_DEFAULT = 1500  # payShield's host port
MAX_CONNECTIONS_DEFAULT = 64
HSM_DEADLINE_S = 5.0  # handed to the backend; the soft backend answers in microseconds
CLOSE_GRACE_S = 2.0
SPAWN_TIMEOUT_S = 20.0  # `spawn`: until the child says it listens
MASTER_KEY_LINE_MAX = 128  # `--master-key-file -`: 64 hex digits and a newline
EXIT_HSM = 4  # as the engine: the key file or master key cannot be used

log = logging.getLogger(__name__)


class ServerState(enum.Enum):
    new = "new"
    serving = "serving"
    closing = "closing"
    closed = "closed"


class HsmServer:
    def __init__(
        self,
        hsm: Hsm,
        *,
        latency_s: float = 0.0,
        fail_every: int = 0,
        max_connections: int = MAX_CONNECTIONS_DEFAULT,
    ) -> None:
        if latency_s < 0 or fail_every < 0 or max_connections < 1:
            raise ValueError("latency_s and fail_every must be >= 0, max_connections >= 1")
        self.hsm, self.latency_s, self.fail_every = hsm, latency_s, fail_every
        self.max_connections = max_connections
        self.state = ServerState.new
        self.requests = 0  # framed requests received, server-wide
        self.connections_peak = 0
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._busy: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The port bound at start (kept after close, to restart on the same one)."""
        if self._port is None:
            raise RuntimeError("the HSM server has no port before start()")
        return self._port

    @property
    def connections(self) -> int:
        return len(self._handlers)

    async def start(self, host: str = HOST_DEFAULT, port: int = 0) -> None:
        if self.state is not ServerState.new:
            raise RuntimeError(f"cannot start an HSM server that is {self.state.value}")
        self._server = await asyncio.start_server(self._handle, host, port, limit=MAX_MESSAGE_BYTES)
        self._port = self._server.sockets[0].getsockname()[1]
        self.state = ServerState.serving

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None:  # asyncio runs every connection handler in a task of its own
            raise AssertionError("HSM connection handler outside a task")
        if self.state is not ServerState.serving or len(self._handlers) >= self.max_connections:
            writer.close()
            return
        self._handlers[task] = writer
        self.connections_peak = max(self.connections_peak, len(self._handlers))
        try:
            while self.state is ServerState.serving:
                try:
                    payload = await read_payload(reader)
                except (asyncio.IncompleteReadError, RemoteProtocolError, OSError):
                    return
                self._busy.add(task)
                try:
                    reply = await self._answer(payload)
                    if reply is None:
                        return
                    writer.write(reply)
                    await writer.drain()
                finally:
                    self._busy.discard(task)
        except OSError:
            return  # the client went away mid-reply
        except asyncio.CancelledError:
            if self.state is ServerState.serving:
                raise
            # Cancelled by close() or abort(): the connection's end, not an error
            # (asyncio would log a cancelled connection task as one).
        finally:
            del self._handlers[task]
            writer.close()

    async def _answer(self, payload: bytes) -> bytes | None:
        """The reply message, or None to close the connection without one."""
        self.requests += 1
        if self.fail_every and self.requests % self.fail_every == 0:
            return None
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        try:
            request = decode_request(payload)
        except RemoteProtocolError as exc:
            if exc.header is None or exc.code is None:
                return None
            return _error(exc.header, reply_code(exc.code), error_code_for(exc), str(exc))
        return await self._execute(request)

    async def _execute(self, request: Request) -> bytes:
        code = reply_code(request.command.value)
        spec = SPECS[request.command]
        method = getattr(self.hsm, request.command.name)
        try:
            result = await method(*request.args, deadline_s=HSM_DEADLINE_S)
        except HsmError as exc:
            return _error(request.header, code, error_code_for(exc), str(exc))
        except Exception as exc:
            log.error("hsm server: %s failed: %s", request.command.name, type(exc).__name__)
            return _error(request.header, code, ErrorCode.internal, type(exc).__name__)
        if spec.verify:
            if result:
                return encode_reply(Reply(request.header, code, ErrorCode.ok))
            return _error(request.header, code, ErrorCode.verification_failed, "no match")
        value: Value = tuple(result) if isinstance(result, list) else result
        try:
            return encode_reply(Reply(request.header, code, ErrorCode.ok, (value,)))
        except (HsmError, TypeError) as exc:  # a backend answering outside the spec
            return _error(request.header, code, ErrorCode.internal, f"reply does not fit: {exc}")

    async def close(self, grace_s: float = CLOSE_GRACE_S) -> None:
        """Stop listening, let requests being answered finish (within `grace_s`), then
        close every connection."""
        if self.state in (ServerState.closing, ServerState.closed):
            return
        self.state = ServerState.closing
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            if task not in self._busy:
                task.cancel()
        pending = list(self._handlers)
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self.state = ServerState.closed

    async def abort(self) -> None:
        """A crash: stop listening and drop every connection without answering."""
        if self.state is ServerState.closed:
            return
        self.state = ServerState.closing
        if self._server is not None:
            self._server.close()
        for task, writer in list(self._handlers.items()):
            writer.transport.abort()
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self.state = ServerState.closed


def _error(header: str, code: str, error: ErrorCode, message: str) -> bytes:
    return encode_reply(Reply(header, code, error, (), clip_message(message)))


async def serve(
    hsm: Hsm,
    host: str = HOST_DEFAULT,
    port: int = 0,
    *,
    latency_s: float = 0.0,
    fail_every: int = 0,
    max_connections: int = MAX_CONNECTIONS_DEFAULT,
) -> HsmServer:
    """A started server (port 0: a free port, see `.port`); the caller closes it."""
    server = HsmServer(
        hsm, latency_s=latency_s, fail_every=fail_every, max_connections=max_connections
    )
    await server.start(host, port)
    return server


# -- the program -------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--host", default=HOST_DEFAULT, help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=PORT_DEFAULT, help="TCP port (1500)")
    parser.add_argument(
        "--key-file",
        default=os.environ.get("YIKATONG_HSM_KEY_FILE", "var/hsm/keys.json"),
        help="soft-HSM key file (default $YIKATONG_HSM_KEY_FILE or var/hsm/keys.json)",
    )
    parser.add_argument(
        "--master-key-file",
        default="",
        help="file with the master key, mode 0600, or - for standard input (else the environment)",
    )
    parser.add_argument("--latency-ms", type=int, default=0, help="delay every answer")
    parser.add_argument(
        "--fail-every", type=int, default=0, help="drop the connection on every N-th request"
    )
    parser.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS_DEFAULT)
    return parser


async def run(args: argparse.Namespace) -> None:
    """Serve until SIGINT or SIGTERM, then close gracefully. KeyStoreError if the key
    file or master key cannot be used."""
    store = KeyStore.load(Path(args.key_file), _master_key(args.master_key_file))
    server = await serve(
        SoftHsm(store),
        args.host,
        args.port,
        latency_s=args.latency_ms / 1000,
        fail_every=args.fail_every,
        max_connections=args.max_connections,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"hsm simulator: {len(store.entries())} keys, listening on {args.host}:{server.port}")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await server.close()


def _master_key(master_key_file: str) -> bytes:
    if master_key_file == "-":
        return parse_master_key(sys.stdin.readline(MASTER_KEY_LINE_MAX), "standard input")
    try:
        return load_master_key(os.environ, Path(master_key_file) if master_key_file else None)
    finally:
        drop_from_environ([MASTER_KEY_ENV])


def spawn(
    key_file: Path,
    master_key: bytes,
    *,
    host: str = HOST_DEFAULT,
    port: int,
    extra_args: Sequence[str] = (),
    timeout_s: float = SPAWN_TIMEOUT_S,
) -> subprocess.Popen[bytes]:
    """`python -m simulators.hsm_server` as a child process, given the master key
    through a pipe and an environment without secrets; returns once it listens (its
    stdout stays a pipe: the caller reads or closes it). The caller stops it."""
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "simulators.hsm_server", "--master-key-file", "-"),
            *("--key-file", str(key_file), "--host", host, "--port", str(port), *extra_args),
        ],
        env=child_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    if proc.stdin is None or proc.stdout is None:  # both were asked for as pipes
        raise AssertionError("spawn: the child has no pipes")
    try:
        proc.stdin.write(master_key.hex().encode() + b"\n")
        proc.stdin.close()
        _wait_listening(proc, time.monotonic() + timeout_s)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


def _wait_listening(proc: subprocess.Popen[bytes], deadline: float) -> None:
    """Read the child's first line within the deadline: "... listening on ..."."""
    if proc.stdout is None:
        raise AssertionError("spawn: the child has no stdout pipe")
    fd = proc.stdout.fileno()
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError("the HSM simulator did not start listening in time")
        chunk = os.read(fd, 256)
        if not chunk:
            raise RuntimeError(f"the HSM simulator exited while starting: {line!r}")
        line += chunk
    if b"listening on" not in line:
        raise RuntimeError(f"the HSM simulator did not start: {line!r}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = add_arguments(
        argparse.ArgumentParser(
            prog="hsm_server", description="HSM simulator: the remote HSM protocol over TCP"
        )
    )
    args = parser.parse_args(argv)
    try:
        uvloop.run(run(args))  # as the engine runs: ~45 µs less per request than asyncio's loop
    except KeyStoreError as exc:
        print(f"hsm_server: {exc}", file=sys.stderr)
        return EXIT_HSM
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
