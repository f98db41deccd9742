"""Helpers for tests that run the real engine as a subprocess."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

import pytest

# The tests' free-port helper is the rig's (re-exported for the tests that import it here).
from simulators.rig import free_port as free_port


def postgres_pids_for(data_dir: Path) -> list[int]:
    """Live (non-zombie) postgres processes whose command line names `data_dir`."""
    found = []
    needle = str(data_dir.resolve()).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if b"postgres" in cmdline and needle in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def http_get(url: str, timeout_s: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


TEST_MASTER_KEY_HEX = "5A" * 32


def hsm_env(tmp: Path) -> dict[str, str]:
    """A soft-HSM key file with the demo hierarchy under `tmp` (made once), and the
    environment that points the engine and the simulators at it."""
    key_file = tmp / "hsm" / "keys.json"
    if not key_file.exists():
        from hsm.keystore import KeyStore
        from hsm.soft_admin import demo_hierarchy

        key_file.parent.mkdir(parents=True, exist_ok=True)
        KeyStore(demo_hierarchy()).save(key_file, bytes.fromhex(TEST_MASTER_KEY_HEX))
    return {"YIKATONG_HSM_KEY_FILE": str(key_file), "YIKATONG_HSM_MASTER_KEY": TEST_MASTER_KEY_HEX}


class EngineProcess:
    """`yikatong serve` in a subprocess on a free port; stderr goes to a file."""

    def __init__(self, tmp: Path, env: dict[str, str], args: list[str] | None = None) -> None:
        self.port = free_port()
        self.log_path = tmp / f"engine-{self.port}.log"
        self._log: IO[Any] = self.log_path.open("wb")
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("YIKATONG_")}
        full_env.update({"YIKATONG_SERVER_PORT": str(self.port), **hsm_env(tmp), **env})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve", *(args or [])],
            env=full_env,
            cwd=tmp,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"engine exited {self.proc.returncode}:\n{self.log_text()}")
            try:
                status, _, _ = http_get(self.url + "/readyz", timeout_s=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"engine not ready in {timeout_s}s:\n{self.log_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._log.close()


def prometheus_tool(name: str) -> str:
    """The path of a tool of Debian's prometheus package (promtool, prometheus): the
    test is skipped when it is missing, and fails under CI (the bootstrap installs it)."""
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else "")
    if found:
        return found
    message = f"{name} not found: install Debian's prometheus package (deploy/bootstrap.sh)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
