"""Keeping secrets where they belong: out of the environment of every child process,
out of this process's environment once read, and in files nobody else may read or
write.

Why (docs/SECURITY.md): an environment is copied into every process started from it,
and `/proc/PID/environ` shows it to whoever may inspect that process — the embedded
PostgreSQL runs as another OS user, so anything of the engine's environment it
inherits is readable by that user and by a superuser SQL session
(`pg_read_file('/proc/self/environ')`).

The secret set, one definition for every caller (`is_secret_name`): a variable whose
name, upper-cased, matches one of `SECRET_NAME_PATTERNS` (shell-style). That covers
the HSM's settings (`YIKATONG_HSM_*`: the soft master key, the PKCS#11 PIN, the key
file paths), any PIN, master key, secret, token, password, passphrase, private or API
key, credential, a database URL or DSN (either may carry a password), and an SSH agent
socket. Children that need one of them get it passed explicitly (a 0600 file, a pipe),
never inherited.

Invariants:
- `child_env()` passes on no secret name that `env` holds; what a child must get is
  added through `extra` by name, visibly at the call site;
- `read_private_file` checks the mode of the file it opened (fstat on the same
  descriptor: no window between check and read) and refuses any group or other
  permission bit, and an owner other than this user or root; the message names the
  file, its mode and the fix, never the content.

Imports nothing of ours, so every room may use it (DESIGN.md §1: hsm is below them all).
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

SECRET_NAME_PATTERNS: tuple[str, ...] = (
    "YIKATONG_HSM_*",  # soft master key, PKCS#11 PIN, key file paths: the HSM's own
    "*MASTER_KEY*",
    "PIN",
    "*_PIN",
    "*_PIN_*",
    "*SECRET*",
    "*TOKEN*",
    "*PASSWORD*",
    "*PASSWD*",
    "*PASSPHRASE*",
    "PGPASS*",  # libpq's password and password file
    "*PRIVATE_KEY*",
    "*API_KEY*",
    "*ACCESS_KEY*",
    "*CREDENTIAL*",
    "*DATABASE_URL*",  # postgresql://user:password@host/...
    "*_DSN",
    "SSH_AUTH_SOCK",  # lets a process use the user's SSH keys
)
OUR_PREFIX = "YIKATONG_"
PRIVATE_MODE_MASK = stat.S_IRWXG | stat.S_IRWXO  # 0o077: no bit for group or others
PRIVATE_FILE_BYTES_MAX = 1 << 20  # key files are a few KB; refuse to slurp a device


class PrivateFileError(Exception):
    """A file that must be private cannot be used; names the file, never its content."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path


def is_secret_name(name: str) -> bool:
    """Whether an environment variable of this name is kept out of children."""
    upper = name.upper()
    return any(fnmatch.fnmatchcase(upper, pattern) for pattern in SECRET_NAME_PATTERNS)


def child_env(
    env: Mapping[str, str] | None = None,
    *,
    keep_ours: bool = False,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment for a child process: `env` (default: ours) without any secret
    name and, unless `keep_ours`, without any `YIKATONG_*` setting (children other than
    an engine need none of them), then `extra` on top: what this child needs, named at
    the call site (a key file's path, say; a secret value itself goes through a
    private file or a pipe, not the environment)."""
    source = os.environ if env is None else env
    out = {
        name: value
        for name, value in source.items()
        if not is_secret_name(name) and (keep_ours or not name.startswith(OUR_PREFIX))
    }
    out.update(extra or {})
    return out


def drop_from_environ(names: Iterable[str]) -> None:
    """Remove variables from this process's environment (os.environ and the C
    environment that fork/exec copy), so that no process started later inherits them.
    /proc/self/environ keeps showing the values the process started with: it is the
    original block, readable by this user and root only."""
    for name in names:
        os.environ.pop(name, None)


def _mode_problem(path: Path, st: os.stat_result, what: str) -> str | None:
    mode = stat.S_IMODE(st.st_mode)
    if mode & PRIVATE_MODE_MASK:
        return (
            f"{what} {path} has mode {mode:04o}: group or others may read or write it;"
            f" run `chmod 600 {path}`"
        )
    if st.st_uid not in (os.geteuid(), 0):
        return (
            f"{what} {path} belongs to uid {st.st_uid}, not to this user ({os.geteuid()})"
            " or root: its owner could replace it"
        )
    return None


def check_private(path: Path, st: os.stat_result, what: str) -> None:
    """Raise PrivateFileError unless `st` (of `path`) is private to its owner."""
    problem = _mode_problem(path, st, what)
    if problem is not None:
        raise PrivateFileError(path, problem)


def read_private_file(path: Path, what: str) -> bytes:
    """The bytes of `path`, refused (PrivateFileError) when group or others have any
    permission on it or another user owns it. `what` names the file in messages
    ("master key file", "terminal key file")."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise PrivateFileError(path, f"cannot read {what} {path}: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PrivateFileError(path, f"{what} {path} is not a regular file")
        check_private(path, st, what)
        chunks: list[bytes] = []
        size = 0
        while size <= PRIVATE_FILE_BYTES_MAX:
            chunk = os.read(fd, PRIVATE_FILE_BYTES_MAX + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        raise PrivateFileError(path, f"cannot read {what} {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if len(data) > PRIVATE_FILE_BYTES_MAX:
        raise PrivateFileError(path, f"{what} {path} is larger than {PRIVATE_FILE_BYTES_MAX} bytes")
    return data


def write_private_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (temporary file, fsync, rename), mode 0600
    from the first byte on."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT keeps the mode of a leftover temporary file
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
