"""The agent's per-install bearer secret: a token file that only the agent's own OS
user can read. Clients (the HIS, the kiosk's UI shell) read it and send
`Authorization: Bearer <token>` on every request (docs/CARD_AGENT.md says why a
bearer secret rather than a Unix-socket peer check).

Invariants:
- the file is created with O_CREAT | O_EXCL | O_NOFOLLOW and mode 0600 in one call,
  so it is never readable by anyone else, not even between creation and chmod; the
  token is written, fsynced, and only then used;
- an existing file is opened with O_NOFOLLOW and checked on the open descriptor
  (fstat, so no swap between check and read): a regular file, owned by this user,
  with no permission bit for group or others, holding base64url text of
  TOKEN_CHARS_MIN..MAX characters; anything else is refused with `TokenFileError`;
- the directory it is created in must not be writable by group or others (unless
  sticky), since whoever can write there could swap the file;
- the token is never logged or printed; its `repr` is masked.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from terminals.agent import limits

_TOKEN_RE = re.compile(rf"^[A-Za-z0-9_-]{{{limits.TOKEN_CHARS_MIN},{limits.TOKEN_CHARS_MAX}}}$")
_SECRET_BITS = stat.S_IRWXG | stat.S_IRWXO


class TokenFileError(ValueError):
    """The token file cannot be used; the message names the path and why."""


@dataclass(frozen=True)
class BearerToken:
    value: str = field(repr=False)
    path: Path

    def __repr__(self) -> str:
        return f"BearerToken(<hidden>, path={str(self.path)!r})"


def default_token_path() -> Path:
    """`$XDG_STATE_HOME/yikatong/agent.token`, else `~/.local/state/yikatong/...`."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "yikatong" / "agent.token"


def _check_directory(directory: Path) -> None:
    try:
        st = directory.stat()
    except OSError as exc:
        raise TokenFileError(f"{directory}: cannot use the directory: {exc}") from exc
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        raise TokenFileError(
            f"{directory}: writable by group or others (mode {stat.S_IMODE(st.st_mode):o});"
            " the token file must live in a directory only its owner can write"
        )


def _create(path: Path) -> BearerToken | None:
    """A new token in a new file; None when the file exists already."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return None
    except OSError as exc:
        raise TokenFileError(f"{path}: cannot create: {exc}") from exc
    token = secrets.token_urlsafe(limits.TOKEN_BYTES)
    try:
        os.fchmod(fd, 0o600)  # the umask may only have removed bits; make it exact
        os.write(fd, token.encode("ascii") + b"\n")
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()
        raise TokenFileError(f"{path}: cannot write: {exc}") from exc
    os.close(fd)
    return BearerToken(token, path)


def read_token_file(path: Path) -> BearerToken:
    """An existing token file, checked as the module docstring says."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise TokenFileError(f"{path}: is a symbolic link; refused") from exc
        raise TokenFileError(f"{path}: cannot open: {exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TokenFileError(f"{path}: not a regular file")
        if st.st_uid != os.geteuid():
            raise TokenFileError(f"{path}: owned by uid {st.st_uid}, not by this user")
        if st.st_mode & _SECRET_BITS:
            raise TokenFileError(
                f"{path}: readable or writable by group or others"
                f" (mode {stat.S_IMODE(st.st_mode):o}); chmod 600 it"
            )
        raw = os.read(fd, limits.TOKEN_CHARS_MAX + 2)
    finally:
        os.close(fd)
    text = raw.decode("ascii", errors="replace").strip()
    if not _TOKEN_RE.match(text):
        raise TokenFileError(
            f"{path}: not a token ({limits.TOKEN_CHARS_MIN}..{limits.TOKEN_CHARS_MAX}"
            " base64url characters)"
        )
    return BearerToken(text, path)


def load_or_create_token(path: Path) -> BearerToken:
    """The install's token: read from `path`, or created there (with its directory,
    mode 0700) when missing."""
    if not path.parent.exists():
        try:
            path.parent.mkdir(mode=0o700, parents=True)
        except FileExistsError:
            pass  # made meanwhile by another agent starting
        except OSError as exc:
            raise TokenFileError(f"{path.parent}: cannot create: {exc}") from exc
    _check_directory(path.parent)
    return _create(path) or read_token_file(path)
