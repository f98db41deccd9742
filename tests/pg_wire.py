"""A proxy between a client and PostgreSQL's Unix socket that counts round trips as
the wire shows them, independently of the client's own bookkeeping.

A round trip here is a turn of the conversation: the client sends after the server
has spoken (or for the first time on a connection). However the kernel splits a
batch of messages, it is one turn as long as the server says nothing in between; a
client that waits for each reply, as asyncpg does, makes one turn per reply awaited.
The server's answer is marked before it is forwarded, so the client's next batch
always sees it: no timing is involved. Connection startup and authentication are
turns too; `connections` tells a caller whether any connection was opened while it
was counting.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

CHUNK_BYTES = 65536
PG_PORT = 5432


class _Line:
    """One client connection and its link to the server."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.server_spoke = True  # the client's first bytes are a turn

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
                if line.server_spoke:
                    self._turns += 1
                    line.server_spoke = False
            if not _send(line.server, data):
                break
        line.close()

    def _server_to_client(self, line: _Line) -> None:
        while data := _recv(line.server):
            with self._lock:
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
