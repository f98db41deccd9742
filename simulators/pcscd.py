"""`PcscdManager`: run pcscd with the vsmartcard virtual reader, without systemd.

Starts `pcscd -f -c DIR` as a subprocess with a reader.conf.d of its own (one vpcd
entry, port configurable, default 0x8C7B: readers "<name> 00 00" on the port and
"<name> 00 01" on port + 1), waits until SCardListReaders lists both readers, and
stops it with SIGTERM (SIGKILL after `stop_timeout_s`). Used by the integration test
fixture (tests/pcsc_support.py) and by `yikatong sim pcscd start|stop`.

Invariants:
- only one pcscd can run per machine: its client socket is always
  /run/pcscd/pcscd.comm (TOOLCHAIN.md §1.3). `start()` refuses with `PcscdBusy`,
  naming the pid, when any other pcscd runs, and never touches it;
- files in pcscd's runtime directory are removed only when a pcscd we started made
  them: once ours is ready, its socket and pid file are recorded by identity (device,
  inode, change time) in a marker beside them (`OWNER_MARKER`); a stale file of ours
  (left by a SIGKILL) is removed before the next start, and any other file there — a
  systemd `pcscd.socket`, a pcscd of another container, a leftover nobody recorded —
  is left alone, and `start()` refuses with `PcscdForeignFiles` naming it;
- the log is created mode 0600; with `debug` (pcscd -d -a logs every APDU) pcscd's
  output goes through a filter process (`mask-log`) that masks the data of PIN
  commands (VERIFY, CHANGE PIN, ... `PIN_INSTRUCTIONS`) before it reaches the file;
- pcscd and the filter get an environment without secrets (hsm.secret_guard);
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
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import msgspec

from card.pcsc import list_readers
from card.reader import ReaderUnavailable
from hsm.secret_guard import child_env
from simulators.vpicc import CLONE_NEWNET, PCSCD_PID_FILE, VPCD_PORT, VPCD_SLOTS

log = logging.getLogger(__name__)

PCSCD_BINARY = "/usr/sbin/pcscd"
PCSCD_RUNTIME_DIR = PCSCD_PID_FILE.parent  # where pcscd 1.9 puts its files, always
SOCKET_NAME, PID_NAME = "pcscd.comm", PCSCD_PID_FILE.name
PCSCD_SOCKET = PCSCD_RUNTIME_DIR / SOCKET_NAME
OWNER_MARKER = ".yikatong-pcscd.json"  # in the runtime directory: which files are ours
MASKER_STOP_TIMEOUT_S = 5.0  # the log filter ends by itself once pcscd closes its pipe
# INS of commands whose data is a PIN, masked in debug logs whatever the class byte:
# VERIFY (20, 21), CHANGE REFERENCE DATA (24), RESET RETRY COUNTER (2C), and the
# SSSE CHANGE PIN (80 5E, card/ssse.py).
PIN_INSTRUCTIONS = frozenset({0x20, 0x21, 0x24, 0x2C, 0x5E})
_APDU_LINE = re.compile(rb"^(?P<head>.*?APDU: )(?P<apdu>(?:[0-9A-Fa-f]{2} ?)+)(?P<end>\s*)$")
VPCD_DRIVER = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
FRIENDLY_NAME = "Yikatong vpcd"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
READY_POLL_S = 0.01  # between SCardListReaders attempts while pcscd starts
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


class PcscdError(Exception):
    """pcscd could not be started or stopped."""


class PcscdNotOurs(PcscdError):
    """The machine's PC/SC service is someone else's: we may not start ours."""


class PcscdBusy(PcscdNotOurs):
    """Another pcscd already runs on this machine (one per machine)."""

    def __init__(self, pid: int) -> None:
        super().__init__(
            f"another pcscd is already running (pid {pid}); only one can run per machine"
            f" (/run/pcscd/pcscd.comm). Stop it (kill {pid}) or use it instead"
        )
        self.pid = pid


class PcscdForeignFiles(PcscdNotOurs):
    """pcscd's runtime directory holds files no pcscd of ours made (never removed)."""

    def __init__(self, paths: list[Path]) -> None:
        names = ", ".join(str(p) for p in paths)
        super().__init__(
            f"{names} exists and was not made by a pcscd that yikatong started (systemd's"
            " pcscd.socket? a pcscd in another container?); it is left alone. If nothing"
            f" serves PC/SC here, remove it by hand (rm {names}) and start again"
        )
        self.paths = paths


class FileId(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A file's identity: a new file at the same path has another (inode, ctime)."""

    dev: int
    ino: int
    ctime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileId | None:
        try:
            st = path.lstat()
        except FileNotFoundError:
            return None
        return cls(st.st_dev, st.st_ino, st.st_ctime_ns)


class OwnerMarker(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The files a pcscd of ours made in the runtime directory, by name."""

    pid: int
    files: dict[str, FileId]


class PcscdInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What `start()` writes to `info_path` for other processes (`yikatong sim card`,
    `yikatong sim pcscd stop`): which pcscd is ours and where its slots are."""

    pid: int
    port: int
    readers: tuple[str, ...]
    isolated: bool
    log_filter_pid: int | None = None  # the `mask-log` process of a --debug pcscd

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


def record_ownership(pid: int, runtime_dir: Path = PCSCD_RUNTIME_DIR) -> None:
    """Note the socket and pid file our pcscd `pid` made (call once it is ready)."""
    files = {}
    for name in (SOCKET_NAME, PID_NAME):
        found = FileId.of(runtime_dir / name)
        if found is not None:
            files[name] = found
    marker = runtime_dir / OWNER_MARKER
    tmp = marker.with_name(marker.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(msgspec.json.encode(OwnerMarker(pid, files)))
    os.replace(tmp, marker)


def _owner_marker(runtime_dir: Path) -> OwnerMarker | None:
    """The marker, if this user wrote it and nobody else could have changed it."""
    try:
        with (runtime_dir / OWNER_MARKER).open("rb") as file:
            st = os.fstat(file.fileno())
            data = file.read()
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None
        return msgspec.json.decode(data, type=OwnerMarker)
    except (OSError, msgspec.DecodeError):
        return None


def remove_stale_files(runtime_dir: Path = PCSCD_RUNTIME_DIR) -> list[Path]:
    """pcscd refuses to start while its socket exists. Remove the socket and pid file
    a pcscd of ours left when it died (kill -9, crash), as the marker identifies them;
    return those present that are not ours, untouched. Call only when no pcscd runs."""
    marker = _owner_marker(runtime_dir)
    ours = marker.files if marker is not None else {}
    foreign = []
    for name in (SOCKET_NAME, PID_NAME):
        path = runtime_dir / name
        found = FileId.of(path)
        if found is None:
            continue
        if ours.get(name) == found:
            log.info("removing %s left by a pcscd of ours that is gone", path)
            path.unlink(missing_ok=True)
        else:
            foreign.append(path)
    if marker is not None and not any(
        FileId.of(runtime_dir / name) == file_id for name, file_id in ours.items()
    ):
        (runtime_dir / OWNER_MARKER).unlink(missing_ok=True)
    return foreign


def mask_pin_apdu(line: bytes) -> bytes:
    """A pcscd log line with the data of a PIN command masked (`PIN_INSTRUCTIONS`):
    "APDU: 00 20 00 00 03 12 34 56" becomes "APDU: 00 20 00 00 [PIN data masked]", so
    neither the digits nor their number shows. Other lines are returned unchanged."""
    match = _APDU_LINE.match(line)
    if match is None:
        return line
    apdu = match["apdu"].split()
    if len(apdu) <= 4 or int(apdu[1], 16) not in PIN_INSTRUCTIONS:
        return line
    return match["head"] + b" ".join(apdu[:4]) + b" [PIN data masked]" + match["end"]


def mask_log(source: IO[bytes], sink: IO[bytes]) -> None:
    """Copy pcscd's output line by line, PIN data masked, until end of file."""
    for line in source:
        sink.write(mask_pin_apdu(line))
        sink.flush()


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
        runtime_dir: Path = PCSCD_RUNTIME_DIR,
    ) -> None:
        self.work_dir = work_dir.resolve()  # pcscd changes to / before reading its config
        # Where pcscd's socket and pid file are: always /run/pcscd for pcscd 1.9; another
        # directory only lets tests check what the manager would do with its files.
        self.runtime_dir = runtime_dir
        self.port = port
        self.readers = reader_names(friendly_name)
        self._friendly_name = friendly_name
        self._isolate = isolate_network
        self._debug = debug
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._masker: subprocess.Popen[bytes] | None = None
        self._recorded = False  # its files are in the owner marker
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
        foreign = remove_stale_files(self.runtime_dir)
        if foreign:
            raise PcscdForeignFiles(foreign)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._proc = self._spawn()
        except BaseException:
            self.stop()  # the log filter, if it started
            raise
        self.state = PcscdState.running
        try:
            self._wait_ready(self._proc)
            record_ownership(self._proc.pid, self.runtime_dir)
            self._recorded = True
        except BaseException:
            self.stop()
            raise
        masker_pid = self._masker.pid if self._masker is not None else None
        info = PcscdInfo(self._proc.pid, self.port, self.readers, self.isolated, masker_pid)
        self.info_path.write_bytes(msgspec.json.encode(info))
        if self._isolate and not self.isolated:
            log.warning(
                "pcscd runs in the host network namespace: vpcd listens on 0.0.0.0:%d-%d",
                self.port,
                self.port + VPCD_SLOTS - 1,
            )
        log.info("pcscd %d ready (isolated=%s): %s", self._proc.pid, self.isolated, self.readers)

    def _spawn(self) -> subprocess.Popen[bytes]:
        """pcscd writing to the 0600 log, through the masking filter when debugging."""
        log_fd = os.open(
            self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600
        )
        try:
            os.fchmod(log_fd, 0o600)  # a log left by an older version may be 0644
            output = log_fd
            if self._debug:
                read_end, output = os.pipe()
                try:
                    self._masker = subprocess.Popen(
                        [sys.executable, "-m", "simulators.pcscd", "mask-log"],
                        stdin=read_end,
                        stdout=log_fd,
                        stderr=log_fd,
                        env=child_env(),
                        start_new_session=True,  # it ends when pcscd closes the pipe
                    )
                finally:
                    os.close(read_end)
            try:
                return subprocess.Popen(
                    self._command(),
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env=child_env(),
                    start_new_session=True,  # a Ctrl-C in the terminal is not pcscd's to get
                )
            finally:
                if output != log_fd:
                    os.close(output)  # pcscd holds the write end; EOF for the filter at its exit
        finally:
            os.close(log_fd)

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
            if not self._recorded and proc.poll() is None:
                # Stopped before it was ready: what is in the runtime directory now was
                # made by it (start() found the directory clean and no pcscd running).
                with contextlib.suppress(OSError):  # it may not have made the directory
                    record_ownership(proc.pid, self.runtime_dir)
            self._recorded = False
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self._stop_timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("pcscd %d ignored SIGTERM; killing it", proc.pid)
                proc.kill()
                proc.wait(self._stop_timeout_s)
            remove_stale_files(self.runtime_dir)  # after a clean exit: only the marker
        masker, self._masker = self._masker, None
        if masker is not None:
            try:
                masker.wait(MASKER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("the pcscd log filter %d did not end; killing it", masker.pid)
                masker.kill()
                masker.wait()
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
    if argv == ["mask-log"]:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # ends at EOF, after pcscd's last line
        mask_log(sys.stdin.buffer, sys.stdout.buffer)
        return 0
    print(
        "usage: python -m simulators.pcscd exec-isolated -- COMMAND...\n"
        "       python -m simulators.pcscd mask-log   (a filter: stdin to stdout)",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
