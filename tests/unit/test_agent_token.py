"""The card agent's token file (terminals.agent.token) on the real file system: created
0600 even under a permissive umask, never replaced once it exists, and refused when
others could read it, when it is a symbolic link, someone else's, not a token, or in
a directory others can write."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from terminals.agent.token import TokenFileError, load_or_create_token, read_token_file


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_token_file_is_0600_in_a_0700_directory_even_with_umask_0(tmp_path: Path) -> None:
    path = tmp_path / "state" / "yikatong" / "agent.token"
    old = os.umask(0)
    try:
        token = load_or_create_token(path)
    finally:
        os.umask(old)
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert path.read_text() == token.value + "\n" and len(token.value) == 43
    assert token.value not in repr(token)


def test_an_existing_token_is_kept_and_read_back(tmp_path: Path) -> None:
    first = load_or_create_token(tmp_path / "agent.token")
    second = load_or_create_token(tmp_path / "agent.token")
    assert first.value == second.value


@pytest.mark.parametrize("bits", [0o640, 0o604, 0o620, 0o602, 0o610])
def test_a_token_file_others_may_touch_is_refused(tmp_path: Path, bits: int) -> None:
    path = tmp_path / "agent.token"
    load_or_create_token(path)
    path.chmod(bits)
    with pytest.raises(TokenFileError, match="group or others"):
        load_or_create_token(path)


def test_a_symbolic_link_is_refused_not_followed(tmp_path: Path) -> None:
    real = tmp_path / "real.token"
    load_or_create_token(real)
    link = tmp_path / "agent.token"
    link.symlink_to(real)
    with pytest.raises(TokenFileError, match="symbolic link"):
        read_token_file(link)
    dangling = tmp_path / "planted.token"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(TokenFileError):
        load_or_create_token(dangling)
    assert not (tmp_path / "nowhere").exists()  # O_EXCL | O_NOFOLLOW: nothing created there


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_someone_elses_token_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "agent.token"
    load_or_create_token(path)
    os.chown(path, 1, 1)
    with pytest.raises(TokenFileError, match="owned by uid 1"):
        read_token_file(path)


@pytest.mark.parametrize("text", ["", "short", "x" * 300, "has spaces in it and is long enough!!"])
def test_a_file_that_holds_no_token_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "agent.token"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(TokenFileError, match="not a token"):
        read_token_file(path)


def test_a_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(TokenFileError, match="writable by group or others"):
        load_or_create_token(shared / "agent.token")
    assert not (shared / "agent.token").exists()
    shared.chmod(0o1777)  # sticky, like /tmp: others cannot replace our file
    load_or_create_token(shared / "agent.token")
