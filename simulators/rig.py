"""An engine of its own for the test rigs (`make demo`, `yikatong loadtest` without
`--url`): a new directory with a fresh soft-HSM key file and an embedded database, the
engine as a subprocess on a free loopback port, `yikatong ...` commands run against the
same environment, and a clean stop that leaves no postgres behind.

The master key of the key file is generated per run and lives in a file of the rig's
directory, mode 0600 (`master_key_file`), named to the rig's processes by
YIKATONG_HSM_MASTER_KEY_FILE: never in an environment. `env` is what the rig's engine
and `yikatong` commands get: our environment without secrets and without YIKATONG_*
settings (hsm.secret_guard.child_env), plus the rig's own settings.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from hsm.keystore import MASTER_KEY_FILE_ENV
from hsm.secret_guard import child_env, write_private_file

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
CLI_TIMEOUT_S = 3600.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(url: str, timeout_s: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def postgres_running(data_dir: Path) -> bool:
    """A live (non-zombie) postgres process of `data_dir` exists."""
    needle = str(data_dir.resolve()).encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
            except OSError:
                continue
            if b"postgres" in cmdline and needle in cmdline and state != "Z":
                return True
    return False


class EngineRig:
    """`yikatong serve` on a new embedded database under `directory` (emptied first)."""

    def __init__(self, directory: Path, extra_env: dict[str, str] | None = None) -> None:
        # Absolute: the embedded server's socket directory goes into a DSN's host, where
        # a relative path would be taken for a host name.
        directory = directory.resolve()
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        self.directory = directory
        self.data_dir = directory / "pg"
        self.log_path = directory / "engine.log"
        self.port = int(os.environ.get("YIKATONG_SERVER_PORT") or free_port())
        self.url = f"http://127.0.0.1:{self.port}"
        self.master_key_file = directory / "hsm" / "master.key"
        self.master_key_file.parent.mkdir(mode=0o700)
        write_private_file(self.master_key_file, secrets.token_bytes(32).hex().encode())
        self.env = child_env(
            extra={
                "YIKATONG_SERVER_PORT": str(self.port),
                "YIKATONG_SERVER_ACCESS_LOG": "false",
                "YIKATONG_DATABASE_EMBEDDED_DATA_DIR": str(self.data_dir),
                "YIKATONG_HSM_KEY_FILE": str(directory / "hsm" / "keys.json"),
                MASTER_KEY_FILE_ENV: str(self.master_key_file),
                **(extra_env or {}),
            }
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[Any] | None = None

    def cli(self, *args: str, timeout_s: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        """`yikatong ARGS` with the rig's environment (output captured)."""
        return subprocess.run(
            [sys.executable, "-m", "engine", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def init_keys(self) -> None:
        made = self.cli("hsm", "init")
        if made.returncode != 0:
            raise RuntimeError(f"hsm init failed: {made.stderr.strip()[-500:]}")

    def start(self) -> float:
        """Start the engine; return the seconds until /readyz answered 200."""
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve"],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        started = time.monotonic()
        while time.monotonic() - started < READY_TIMEOUT_S:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"engine exited with status {self.proc.returncode} before ready;"
                    f" see {self.log_path}"
                )
            try:
                if http_get(self.url + "/readyz")[0] == 200:
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"engine not ready within {READY_TIMEOUT_S}s; see {self.log_path}")

    def seed(self, persons: int, seed: int, *extra: str) -> str:
        done = self.cli("seed", "--persons", str(persons), "--seed", str(seed), *extra)
        if done.returncode != 0:
            raise RuntimeError(f"seed failed: {done.stderr.strip()[-500:]}")
        return done.stdout.strip()

    def kill(self) -> None:
        """Stop the engine after a failure: SIGTERM first, so that it stops its embedded
        database (a SIGKILLed engine leaves its postgres running on the directory the
        next run empties), SIGKILL if it does not go within STOP_TIMEOUT_S."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self) -> int:
        """SIGTERM and wait; the engine's exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT_S)
        finally:
            self.kill()
            if self._log is not None:
                self._log.close()

    def database_left_running(self) -> bool:
        return postgres_running(self.data_dir)
