"""Finding the processes a load run measures: the engine by the TCP port it listens on,
the PostgreSQL postmaster by the data directory its server reports."""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg

from loadtest.procstat import PROC, _read, parse_pid_stat

POSTMASTER_LOOKUP_TIMEOUT_S = 10.0
_TCP_STATE_LISTEN = "0A"


def parse_listening_inodes(net_tcp_text: str, port: int) -> set[int]:
    """Socket inodes in LISTEN state on `port` (any address) from /proc/net/tcp or tcp6."""
    inodes = set()
    for line in net_tcp_text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 10 or ":" not in parts[1]:
            continue
        if parts[3] == _TCP_STATE_LISTEN and int(parts[1].rsplit(":", 1)[1], 16) == port:
            inode = int(parts[9])
            if inode:
                inodes.add(inode)
    return inodes


def pids_listening_on(port: int, *, proc: Path = PROC) -> list[int]:
    """Every process holding a listening TCP socket on `port` (several for an engine
    whose workers share the port). Needs to read other processes' fds: same user or root."""
    inodes: set[int] = set()
    for name in ("tcp", "tcp6"):
        text = _read(proc / "net" / name)
        if text is not None:
            inodes |= parse_listening_inodes(text, port)
    if not inodes:
        return []
    targets = {f"socket:[{inode}]" for inode in inodes}
    found = []
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            fds = os.scandir(f"{entry.path}/fd")
        except OSError:
            continue
        with fds:
            for fd in fds:
                try:
                    if os.readlink(fd.path) in targets:
                        found.append(int(entry.name))
                        break
                except OSError:
                    continue
    return sorted(found)


class PostmasterLookupError(Exception):
    """The PostgreSQL server named by a DSN could not be asked where its data is."""


async def postmaster_pid(
    dsn: str, *, timeout_s: float = POSTMASTER_LOOKUP_TIMEOUT_S, proc: Path = PROC
) -> int | None:
    """The pid of the postmaster serving `dsn` if it runs on this machine, else None.

    Reads `<data_directory>/postmaster.pid`; None when that is unreadable (a remote
    server, or no permission) — the report then says PostgreSQL's CPU is unknown rather
    than guessing. The pid is accepted only if it is the parent of our own backend, so a
    data directory shared with another pid namespace cannot mislead.
    """
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout_s)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        raise PostmasterLookupError(f"cannot connect to PostgreSQL: {exc}") from exc
    try:
        data_dir = await conn.fetchval("SHOW data_directory", timeout=timeout_s)
        backend_pid = await conn.fetchval("SELECT pg_backend_pid()", timeout=timeout_s)
        # Read while connected: the backend exits when the connection closes.
        backend = _read(proc / str(backend_pid) / "stat")
    except asyncpg.InsufficientPrivilegeError:
        return None
    finally:
        await conn.close(timeout=timeout_s)
    first_line = (_read(Path(data_dir) / "postmaster.pid") or "").split("\n", 1)[0].strip()
    if backend is None or not first_line.isdigit():
        return None
    pid = int(first_line)
    return pid if parse_pid_stat(backend).ppid == pid else None
