"""A proxy between a client and PostgreSQL's Unix socket that counts round trips as
the wire shows them, independently of the client's own bookkeeping, and that can cut
the line at a chosen statement (after asyncpg's tests/test_adversity.py).

A round trip here is a turn of the conversation: the client sends after the server
has spoken (or for the first time on a connection). However the kernel splits a
batch of messages, it is one turn as long as the server says nothing in between; a
client that waits for each reply, as asyncpg does, makes one turn per reply awaited.
The server's answer is marked before it is forwarded, so the client's next batch
always sees it: no timing is involved. Connection startup and authentication are
turns too; `connections` tells a caller whether any connection was opened while it
was counting.

Cutting: the proxy reads the client's side of the protocol message by message
(forwarding only whole messages, byte for byte) and knows which statement each one
runs: a simple Query carries its text; a Bind names a statement whose text came in an
earlier Parse on the same connection (asyncpg prepares once per connection and then
only binds). Each Query or Bind is one statement executed. `arm(Cut...)` picks one
statement on one connection:

- `Cut.before(pattern)`: the statement is not delivered; the line is cut there.
- `Cut.after(pattern)`: the statement is delivered, the line is cut at once, and the
  server's answer is never forwarded: the server ran it, the client cannot know.
- `Cut.inside_transaction(k)`: the k-th statement after a BEGIN (the COMMIT counts) is
  not delivered: a cut that lands inside the transaction whatever the statements are.

A cut is one shot: it fires on the first connection where it matches, then the proxy
passes traffic again (new connections go through). It records what it dropped and
whether the client had an open transaction (BEGIN sent, no COMMIT or ROLLBACK yet)
at that moment. `cut_all()` closes every line now; `refusing()` closes new connections
as soon as they arrive, for as long as it is entered.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

CHUNK_BYTES = 65536
PG_PORT = 5432
# Startup-phase request codes after which another untyped startup packet follows.
_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
# A simple query may hold several statements ("SELECT write(...); COMMIT"): a message
# opens a transaction if one of its statements is BEGIN, and closes it if its last
# statement is COMMIT or ROLLBACK.
_BEGIN = re.compile(r"(?:^|;)\s*(?:BEGIN|START\s+TRANSACTION)\b", re.IGNORECASE)
_END = re.compile(r"(?:^|;)\s*(?:COMMIT|ROLLBACK|END|ABORT)\b[^;]*;?\s*$", re.IGNORECASE)
Chooser = Callable[[Sequence[str], str], bool]


def _in_transaction(statements: Sequence[str]) -> bool:
    """Whether the last BEGIN in `statements` has no COMMIT or ROLLBACK after it."""
    for sql in reversed(statements):
        if _END.search(sql):
            return False
        if _BEGIN.search(sql):
            return True
    return False


@dataclass
class Cut:
    """Where to cut one line; after firing, what the cut saw. Build with a classmethod."""

    choose: Chooser  # (statements this line ran since arming, the next one) -> fire?
    deliver: bool  # whether the chosen statement reaches the server
    description: str
    fired: threading.Event = field(default_factory=threading.Event)
    statement: str = ""  # the chosen statement
    history: list[str] = field(default_factory=list)  # what the line ran before it
    in_transaction: bool = False  # a transaction open when the line went dead

    @classmethod
    def before(cls, pattern: str) -> Cut:
        regex = re.compile(pattern, re.IGNORECASE)
        return cls(lambda _, sql: bool(regex.search(sql)), False, f"before /{pattern}/")

    @classmethod
    def after(cls, pattern: str) -> Cut:
        regex = re.compile(pattern, re.IGNORECASE)
        return cls(lambda _, sql: bool(regex.search(sql)), True, f"after /{pattern}/")

    @classmethod
    def inside_transaction(cls, k: int) -> Cut:
        """Before the k-th statement (k >= 1) that follows a BEGIN on one line."""

        def choose(history: Sequence[str], sql: str) -> bool:
            for back, ran in enumerate(reversed(history)):
                if _END.search(ran):
                    return False
                if _BEGIN.search(ran):
                    return back == k - 1
            return False

        return cls(choose, False, f"statement {k} after BEGIN")

    def wait(self, timeout_s: float = 10.0) -> bool:
        return self.fired.wait(timeout_s)


class _Frontend:
    """The client's half of the protocol, split into whole messages. Yields (type
    byte, b"" in the startup phase; raw bytes of the message; the SQL it executes or
    None)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._startup = True  # untyped packets until the StartupMessage
        self._statements: dict[str, str] = {}  # prepared name -> SQL text

    def feed(self, data: bytes) -> Iterator[tuple[bytes, bytes, str | None]]:
        self._buffer += data
        while True:
            head = 4 if self._startup else 5
            if len(self._buffer) < head:
                return
            if self._startup:
                (length,) = struct.unpack_from("!i", self._buffer, 0)
                kind = b""
            else:
                kind = bytes(self._buffer[:1])
                (length,) = struct.unpack_from("!i", self._buffer, 1)
                length += 1
            if len(self._buffer) < length:
                return
            raw = bytes(self._buffer[:length])
            del self._buffer[:length]
            if self._startup:
                (code,) = struct.unpack_from("!i", raw, 4) if length >= 8 else (0,)
                self._startup = code in (_SSL_REQUEST, _GSSENC_REQUEST)
                yield kind, raw, None
            else:
                yield kind, raw, self._executes(kind, raw[5:])

    def _executes(self, kind: bytes, payload: bytes) -> str | None:
        strings = payload.split(b"\0")
        if kind == b"Q":
            return strings[0].decode(errors="replace")
        if kind == b"P":
            self._statements[strings[0].decode()] = strings[1].decode(errors="replace")
        elif kind == b"B":
            return self._statements.get(strings[1].decode(), "<unknown statement>")
        elif kind == b"C" and payload[:1] == b"S":
            self._statements.pop(payload[1:].split(b"\0")[0].decode(), None)
        return None


class _Line:
    """One client connection and its link to the server."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.server_spoke = True  # the client's first bytes are a turn
        self.frontend = _Frontend()
        self.ran: list[str] = []  # statements executed since the proxy was last armed
        self.dead = False  # cut: nothing more is forwarded either way
        self.finishing: Cut | None = None  # a cut after a Bind: deliver up to its Sync

    def close(self) -> None:
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class RoundTripProxy:
    """Listens at `listen_dir/.s.PGSQL.5432` and forwards to `upstream_dir`'s socket."""

    def __init__(self, upstream_dir: Path, listen_dir: Path) -> None:
        self.upstream = str(upstream_dir / f".s.PGSQL.{PG_PORT}")
        self.listen_dir = listen_dir
        self._lock = threading.Lock()
        self._turns = 0
        self._connections = 0
        self._lines: list[_Line] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._armed: Cut | None = None
        self._refusing = False
        self.cuts = 0  # lines cut so far, by a Cut or cut_all

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.listen_dir}"

    @property
    def turns(self) -> int:
        with self._lock:
            return self._turns

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    # -- cutting ------------------------------------------------------------------------

    def arm(self, cut: Cut) -> Cut:
        """Cut the first line on which `cut` chooses a statement; statements count from
        now on every line. Returns `cut`, which records what happened once it fired."""
        with self._lock:
            if self._armed is not None:
                raise RuntimeError(f"a cut is armed already: {self._armed.description}")
            for line in self._lines:
                line.ran = []
            self._armed = cut
        return cut

    def disarm(self) -> Cut | None:
        """Take back an armed cut that has not fired (returned, or None)."""
        with self._lock:
            cut, self._armed = self._armed, None
        return cut

    def cut_all(self) -> int:
        """Cut every open line now; returns how many."""
        with self._lock:
            lines = [line for line in self._lines if not line.dead]
            for line in lines:
                line.dead = True
            self.cuts += len(lines)
        for line in lines:
            line.close()
        return len(lines)

    @contextlib.contextmanager
    def refusing(self) -> Iterator[None]:
        """While entered, new connections are closed as soon as they are accepted."""
        with self._lock:
            self._refusing = True
        try:
            yield
        finally:
            with self._lock:
                self._refusing = False

    # -- plumbing -----------------------------------------------------------------------

    def __enter__(self) -> RoundTripProxy:
        self._listener.bind(str(self.listen_dir / f".s.PGSQL.{PG_PORT}"))
        self._listener.listen(64)
        self._spawn(self._accept)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            lines = list(self._lines)
        for line in lines:
            line.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed by __exit__
            with self._lock:
                refusing = self._refusing
            if refusing:
                client.close()
                continue
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.connect(self.upstream)
            line = _Line(client, server)
            with self._lock:
                self._connections += 1
                self._lines.append(line)
            self._spawn(self._client_to_server, line)
            self._spawn(self._server_to_client, line)

    def _client_to_server(self, line: _Line) -> None:
        while data := _recv(line.client):
            with self._lock:
                if line.dead and line.finishing is None:
                    break
                if line.server_spoke:
                    self._turns += 1
                    line.server_spoke = False
            out, cut = self._pass(line, data)
            if out and not _send(line.server, out):
                break
            if cut:
                break
        line.close()

    def _pass(self, line: _Line, data: bytes) -> tuple[bytes, bool]:
        """The whole messages of `data` to forward, and whether the line is cut after
        them. Decides under the lock, so a cut fires once and on one line."""
        out = bytearray()
        for kind, raw, sql in line.frontend.feed(data):
            if line.finishing is not None:
                out += raw  # the rest of the chosen statement: Execute ... Sync
                if kind == b"S":
                    line.finishing.fired.set()
                    return bytes(out), True
                continue
            if sql is None:
                out += raw
                continue
            with self._lock:
                cut = self._armed
                if cut is None or not cut.choose(line.ran, sql):
                    if cut is not None:
                        line.ran.append(sql)
                    out += raw
                    continue
                self._armed = None
                cut.statement, cut.history = sql, list(line.ran)
                cut.in_transaction = _in_transaction([*line.ran, sql] if cut.deliver else line.ran)
                line.dead = True  # before anything is forwarded: no answer gets back
                self.cuts += 1
            if not cut.deliver:
                cut.fired.set()
                return bytes(out), True
            out += raw
            if kind == b"Q":  # a simple query is whole in itself
                cut.fired.set()
                return bytes(out), True
            line.finishing = cut
        return bytes(out), False

    def _server_to_client(self, line: _Line) -> None:
        while data := _recv(line.server):
            with self._lock:
                if line.dead:
                    break
                line.server_spoke = True
            if not _send(line.client, data):
                break
        line.close()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(CHUNK_BYTES)
    except OSError:
        return b""


def _send(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True
