"""`PcscdManager`: run pcscd with the vsmartcard virtual reader, without systemd.

Starts `pcscd -f -c DIR` as a subprocess with a reader.conf.d of its own (one vpcd
entry, port configurable, default 0x8C7B: readers "<name> 00 00" on the port and
"<name> 00 01" on port + 1), waits until SCardListReaders lists both readers, and
stops it with SIGTERM (SIGKILL after `stop_timeout_s`). Used by the integration test
fixture (tests/pcsc_support.py) and by `yikatong sim pcscd start|stop`.

Invariants:
- only one pcscd can run per machine: its client socket is always
  /run/pcscd/pcscd.comm (TOOLCHAIN.md §1.3). `start()` refuses with `PcscdBusy`,
  naming the pid, when any other pcscd runs, and never touches it; stale files of a
  dead pcscd are removed first (pcscd itself refuses to start over a stale socket);
- the state moves stopped → running → stopped; `start()` returns only once the
  readers are listed, `stop()` only once the process is gone;
- network isolation (docs/PCSC.md): vpcd 3.3 binds its port on 0.0.0.0 (INADDR_ANY is
  hard-coded; DEVICENAME's host part only switches vpcd to *connecting* to a listening
  card, and that mode aborts pcscd when the card is not there). With
  `isolate_network` (the default), pcscd runs in a fresh network namespace holding
  only a loopback interface, so the port is unreachable from any other address; PC/SC
  clients are unaffected (they use the Unix socket), and `simulators.vpicc` joins the
  namespace to connect. That needs root (CAP_SYS_ADMIN); without it pcscd runs in the
  host namespace, `isolated` is False and a warning names the exposed ports.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import fcntl
import logging
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import msgspec

from card.pcsc import list_readers
from card.reader import ReaderUnavailable
from simulators.vpicc import CLONE_NEWNET, PCSCD_PID_FILE, VPCD_PORT, VPCD_SLOTS

log = logging.getLogger(__name__)

PCSCD_BINARY = "/usr/sbin/pcscd"
PCSCD_SOCKET = PCSCD_PID_FILE.parent / "pcscd.comm"
VPCD_DRIVER = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
FRIENDLY_NAME = "Yikatong vpcd"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
READY_POLL_S = 0.01  # between SCardListReaders attempts while pcscd starts
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


class PcscdError(Exception):
    """pcscd could not be started or stopped."""


class PcscdBusy(PcscdError):
    """Another pcscd already runs on this machine (one per machine)."""

    def __init__(self, pid: int) -> None:
        super().__init__(
            f"another pcscd is already running (pid {pid}); only one can run per machine"
            f" (/run/pcscd/pcscd.comm). Stop it (kill {pid}) or use it instead"
        )
        self.pid = pid


class PcscdInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What `start()` writes to `info_path` for other processes (`yikatong sim card`,
    `yikatong sim pcscd stop`): which pcscd is ours and where its slots are."""

    pid: int
    port: int
    readers: tuple[str, ...]
    isolated: bool

    @classmethod
    def load(cls, path: Path) -> PcscdInfo | None:
        """The info of a pcscd we started that still runs, else None."""
        try:
            info = msgspec.json.decode(path.read_bytes(), type=cls)
        except (OSError, msgspec.DecodeError):
            return None
        return info if pid_alive(info.pid) else None


class PcscdState(enum.Enum):
    stopped = "stopped"
    running = "running"


def reader_names(friendly_name: str = FRIENDLY_NAME) -> tuple[str, ...]:
    """The PC/SC names of the vpcd slots, slot 0 first."""
    return tuple(f"{friendly_name} 00 {slot:02d}" for slot in range(VPCD_SLOTS))


def running_pcscd_pids() -> list[int]:
    """Live (non-zombie) pcscd processes on this machine."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if comm == "pcscd" and state != "Z":
            found.append(int(entry.name))
    return sorted(found)


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_pid_gone(pid: int, timeout_s: float) -> bool:
    """Wait for a process that is not our child to end (pidfd: no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if poller.poll(max(0, int(timeout_s * 1000))):
            # Readable once it exited; a zombie waiting for its parent counts as gone.
            return True
        return not pid_alive(pid)
    finally:
        os.close(fd)


def stop_pid(pid: int, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, wait, SIGKILL if it does not end in `timeout_s`."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        if wait_pid_gone(pid, timeout_s):
            return
        log.warning("pcscd %d ignored SIGTERM for %.0fs; killing it", pid, timeout_s)
        os.kill(pid, signal.SIGKILL)
        if not wait_pid_gone(pid, timeout_s):
            raise PcscdError(f"pcscd {pid} survived SIGKILL for {timeout_s}s")


def remove_stale_files() -> None:
    """pcscd refuses to start while /run/pcscd/pcscd.comm exists; when no pcscd runs,
    what is there was left by one that died (kill -9, crash)."""
    for path in (PCSCD_SOCKET, PCSCD_PID_FILE):
        if path.exists():
            log.info("removing %s left by a pcscd that is gone", path)
            path.unlink(missing_ok=True)


def write_reader_conf(conf_dir: Path, port: int, friendly_name: str) -> Path:
    conf_dir.mkdir(parents=True, exist_ok=True)
    conf = conf_dir / "vpcd"
    conf.write_text(
        f'FRIENDLYNAME "{friendly_name}"\n'
        f"DEVICENAME   /dev/null:0x{port:04X}\n"
        f"LIBPATH      {VPCD_DRIVER}\n"
        f"CHANNELID    0x{port:04X}\n"
    )
    return conf_dir


class PcscdManager:
    """One pcscd subprocess with the vpcd reader; see the module docstring."""

    def __init__(
        self,
        work_dir: Path,
        *,
        port: int = VPCD_PORT,
        friendly_name: str = FRIENDLY_NAME,
        isolate_network: bool = True,
        debug: bool = False,
        start_timeout_s: float = START_TIMEOUT_S,
        stop_timeout_s: float = STOP_TIMEOUT_S,
    ) -> None:
        self.work_dir = work_dir.resolve()  # pcscd changes to / before reading its config
        self.port = port
        self.readers = reader_names(friendly_name)
        self._friendly_name = friendly_name
        self._isolate = isolate_network
        self._debug = debug
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[Any] | None = None
        self.log_path = self.work_dir / "pcscd.log"
        self.info_path = self.work_dir / "pcscd.json"
        self.state = PcscdState.stopped

    def __repr__(self) -> str:
        return f"PcscdManager(port={self.port}, {self.state.value}, pid={self.pid})"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def netns(self) -> Path | None:
        """The namespace pcscd runs in when it is not ours (isolated), else None."""
        if self._proc is None:
            return None
        try:
            theirs = os.stat(f"/proc/{self._proc.pid}/ns/net")
            ours = os.stat("/proc/self/ns/net")
        except OSError:
            return None
        same = (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)
        return None if same else Path(f"/proc/{self._proc.pid}/ns/net")

    @property
    def isolated(self) -> bool:
        return self.netns is not None

    def _command(self) -> list[str]:
        conf_dir = write_reader_conf(
            self.work_dir / "reader.conf.d", self.port, self._friendly_name
        )
        cmd = [PCSCD_BINARY, "-f", "-c", str(conf_dir), *(["-d", "-a"] if self._debug else [])]
        if self._isolate:
            cmd = [sys.executable, "-m", "simulators.pcscd", "exec-isolated", "--", *cmd]
        return cmd

    def start(self) -> None:
        """Start pcscd and return once it lists the vpcd readers."""
        if self.state is not PcscdState.stopped:
            raise PcscdError(f"cannot start: pcscd is {self.state.value} (pid {self.pid})")
        others = running_pcscd_pids()
        if others:
            raise PcscdBusy(others[0])
        remove_stale_files()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal is not pcscd's to get
        )
        self.state = PcscdState.running
        try:
            self._wait_ready(self._proc)
        except BaseException:
            self.stop()
            raise
        info = PcscdInfo(self._proc.pid, self.port, self.readers, self.isolated)
        self.info_path.write_bytes(msgspec.json.encode(info))
        if self._isolate and not self.isolated:
            log.warning(
                "pcscd runs in the host network namespace: vpcd listens on 0.0.0.0:%d-%d",
                self.port,
                self.port + VPCD_SLOTS - 1,
            )
        log.info("pcscd %d ready (isolated=%s): %s", self._proc.pid, self.isolated, self.readers)

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        end = time.monotonic() + self._start_timeout_s
        while True:
            if proc.poll() is not None:
                raise PcscdError(
                    f"pcscd exited with status {proc.returncode} while starting;"
                    f" log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                listed = list_readers(timeout_s=max(0.1, end - time.monotonic()))
            except ReaderUnavailable:
                listed = []
            if all(name in listed for name in self.readers):
                return
            if time.monotonic() >= end:
                raise PcscdError(
                    f"pcscd did not list {self.readers} within {self._start_timeout_s}s"
                    f" (listed {listed}); log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(READY_POLL_S)

    def stop(self) -> None:
        """SIGTERM and wait; idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self._stop_timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("pcscd %d ignored SIGTERM; killing it", proc.pid)
                proc.kill()
                proc.wait(self._stop_timeout_s)
                remove_stale_files()
        if self._log is not None:
            self._log.close()
            self._log = None
        self.info_path.unlink(missing_ok=True)
        self.state = PcscdState.stopped

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _bring_loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, request)[:18])[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def exec_isolated(command: list[str]) -> None:
    """Enter a new network namespace with only loopback up, then exec `command` (so
    its pid is ours). Without the privilege, exec it where we are and say so."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) == 0:
        _bring_loopback_up()
    else:
        err = ctypes.get_errno()
        print(
            f"simulators.pcscd: no network namespace ({os.strerror(err)}):"
            " vpcd will listen on all host addresses",
            file=sys.stderr,
            flush=True,
        )
    os.execv(command[0], command)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) >= 3 and argv[0] == "exec-isolated" and argv[1] == "--":
        exec_isolated(argv[2:])
    print("usage: python -m simulators.pcscd exec-isolated -- COMMAND...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
