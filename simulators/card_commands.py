"""`yikatong sim card insert|remove|status` and `yikatong sim pcscd start|stop`: put
virtual cards into the virtual PC/SC reader from a shell (docs/PCSC.md).

`sim pcscd start` runs pcscd with the vpcd reader in the background (a machine
without systemd has nobody else to start it) and records it in
var/run/pcscd/pcscd.json; `sim pcscd stop` stops that one (never a pcscd it did not
start). `sim card insert` starts a background `python -m simulators.vpicc` for one
person's card in one slot, records it in var/run/card-slot<N>.json (log in
card-slot<N>.log next to it) and returns once pcscd reports the card present; `remove`
stops that process and returns once pcscd reports the slot empty. `status` shows both.

Every wait has a deadline (`--timeout`); a failure exits non-zero with one line saying
what to do. A card's keys are derived here from the issuer masters of the demo key
file (YIKATONG_HSM_KEY_FILE and its master key, as for `yikatong serve`) and handed
to the vpicc process through a pipe; the vpicc and pcscd processes get an environment
without secrets (hsm.secret_guard.child_env), so neither ever holds the master key.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from card.pcsc import PcscReader, list_readers
from card.reader import ReaderError
from hsm.keystore import KeyStoreError
from hsm.secret_guard import child_env
from simulators.card.app import CardMode
from simulators.pcscd import (
    MASKER_STOP_TIMEOUT_S,
    PcscdError,
    PcscdInfo,
    PcscdManager,
    pid_alive,
    remove_stale_files,
    stop_pid,
    wait_pid_gone,
)
from simulators.vpicc import VPCD_PORT, VPCD_SLOTS

RUN_DIR = Path("var/run")
WAIT_TIMEOUT_S = 10.0
POLL_S = 0.25  # how often `insert` checks that its vpicc is still alive while waiting
DEFAULT_SEED = 20261129  # simulators.commands.DEFAULT_SEED (not imported: no asyncpg here)


class SlotCard(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A card `sim card insert` put into a slot: its vpicc process and what it holds."""

    pid: int
    slot: int
    index: int
    mode: str
    seed: int
    persons: int
    port: int


def add_card_commands(sims: Any) -> None:
    """Register `card` and `pcscd` under `yikatong sim`."""
    card = sims.add_parser("card", help="insert and remove virtual cards (pcscd + vpcd)")
    actions = card.add_subparsers(dest="card_command", required=True, metavar="ACTION")
    insert = actions.add_parser("insert", help="insert person N's card into a virtual slot")
    insert.add_argument("--index", type=int, required=True, help="person index (0-based)")
    insert.add_argument("--mode", default="genuine", choices=[m.value for m in CardMode])
    insert.add_argument("--seed", type=int, default=DEFAULT_SEED, help="the population's seed")
    insert.add_argument("--persons", type=int, default=10_000, help="the population's size")
    remove = actions.add_parser("remove", help="remove the card from a virtual slot")
    status = actions.add_parser("status", help="list the virtual slots")
    for parser in (insert, remove, status):
        parser.add_argument("--run-dir", type=Path, default=RUN_DIR)
    for parser in (insert, remove):
        parser.add_argument("--slot", type=int, default=0, choices=range(VPCD_SLOTS))
        parser.add_argument("--timeout", type=float, default=WAIT_TIMEOUT_S, metavar="SECONDS")
    card.set_defaults(plugin_main=_card, plugin_needs_database=False)

    pcscd = sims.add_parser("pcscd", help="run pcscd with the virtual reader (no systemd)")
    pactions = pcscd.add_subparsers(dest="pcscd_command", required=True, metavar="ACTION")
    start = pactions.add_parser("start", help="start pcscd in the background")
    start.add_argument("--port", type=int, default=VPCD_PORT, help="vpcd port of slot 0")
    start.add_argument(
        "--no-isolate",
        action="store_true",
        help="run in the host network namespace (vpcd then listens on 0.0.0.0)",
    )
    start.add_argument(
        "--debug",
        action="store_true",
        help="log every APDU (pcscd -d -a), PIN data masked, to a 0600 log",
    )
    stop = pactions.add_parser("stop", help="stop the pcscd that `start` started")
    for parser in (start, stop):
        parser.add_argument("--run-dir", type=Path, default=RUN_DIR)
    pcscd.set_defaults(plugin_main=_pcscd, plugin_needs_database=False)


async def _card(args: argparse.Namespace, dsn: str) -> None:
    action = {"insert": insert_card, "remove": remove_card, "status": print_status}
    await asyncio.to_thread(action[args.card_command], args)


async def _pcscd(args: argparse.Namespace, dsn: str) -> None:
    action = start_pcscd if args.pcscd_command == "start" else stop_pcscd
    await asyncio.to_thread(action, args)


def _fail(message: str) -> SystemExit:
    return SystemExit(f"yikatong sim: {message}")


def _pcscd_dir(run_dir: Path) -> Path:
    return run_dir / "pcscd"


def start_pcscd(args: argparse.Namespace) -> None:
    info = PcscdInfo.load(_pcscd_dir(args.run_dir) / "pcscd.json")
    if info is not None:
        print(f"pcscd already running (pid {info.pid}), readers: {', '.join(info.readers)}")
        return
    manager = PcscdManager(
        _pcscd_dir(args.run_dir),
        port=args.port,
        isolate_network=not args.no_isolate,
        debug=args.debug,
    )
    try:
        manager.start()
    except PcscdError as exc:
        raise _fail(str(exc)) from None
    # The manager's process outlives us on purpose: `sim pcscd stop` ends it by pid.
    where = "its own network namespace" if manager.isolated else "0.0.0.0 (host namespace)"
    print(f"pcscd {manager.pid} ready; vpcd listens on {where}, ports {args.port}-{args.port + 1}")
    print(f"readers: {', '.join(manager.readers)}; log {manager.log_path}")


def stop_pcscd(args: argparse.Namespace) -> None:
    info_path = _pcscd_dir(args.run_dir) / "pcscd.json"
    info = PcscdInfo.load(info_path)
    if info is None:
        info_path.unlink(missing_ok=True)
        print("no pcscd started by yikatong is running")
        return
    try:
        stop_pid(info.pid)
        remove_stale_files()  # ours only: a clean exit removes them itself, a SIGKILL not
        if info.log_filter_pid is not None and not wait_pid_gone(
            info.log_filter_pid, MASKER_STOP_TIMEOUT_S
        ):
            stop_pid(info.log_filter_pid)  # it ends by itself once pcscd's output closes
    except PcscdError as exc:
        raise _fail(str(exc)) from None
    info_path.unlink(missing_ok=True)
    print(f"pcscd {info.pid} stopped")


def _slot_path(run_dir: Path, slot: int) -> Path:
    return run_dir / f"card-slot{slot}.json"


def _slot_card(run_dir: Path, slot: int) -> SlotCard | None:
    try:
        card = msgspec.json.decode(_slot_path(run_dir, slot).read_bytes(), type=SlotCard)
    except (OSError, msgspec.DecodeError):
        return None
    return card if pid_alive(card.pid) else None


def slot_reader(run_dir: Path, slot: int) -> tuple[str, int]:
    """(reader name, vpcd port of slot 0) for `slot`: from the pcscd we started, else
    the vpcd reader of a pcscd someone else runs (default port)."""
    info = PcscdInfo.load(_pcscd_dir(run_dir) / "pcscd.json")
    if info is not None:
        return info.readers[slot], info.port
    try:
        names = list_readers()
    except ReaderError:
        raise _fail("pcscd is not running; start it with `yikatong sim pcscd start`") from None
    name = _vpcd_reader(names, slot)
    if name is None:
        raise _fail(f"pcscd runs but has no vpcd reader for slot {slot} (readers: {names})")
    return name, VPCD_PORT


def _vpcd_reader(names: list[str], slot: int) -> str | None:
    """The vpcd reader of `slot` among `names` (ours or Debian's "Virtual PCD")."""
    for name in names:
        lower = name.lower()
        if name.endswith(f" 00 {slot:02d}") and ("vpcd" in lower or "virtual pcd" in lower):
            return name
    return None


def _card_keys(args: argparse.Namespace) -> bytes | None:
    """The keys of the card to insert, for its vpicc's stdin (None: a clone, which
    invents its own)."""
    if args.mode == CardMode.clone.value:
        return None
    from simulators.card.keys import IssuerMasters, card_keys
    from simulators.population import generate
    from simulators.vpicc import encode_card_keys

    try:
        masters = IssuerMasters.from_env()
    except KeyStoreError as exc:
        raise _fail(f"cannot personalise the card: {exc}") from None
    card = generate(args.seed, args.persons).card(args.index)
    return encode_card_keys(card_keys(masters, card))


def _start_vpicc(command: list[str], keys: bytes | None, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [*command, *(("--card-keys", "-") if keys is not None else ())],
            stdin=subprocess.PIPE if keys is not None else subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=child_env(),
        )
    if keys is not None and proc.stdin is not None:
        with contextlib.suppress(BrokenPipeError):  # it died at once: `insert` reports it
            proc.stdin.write(keys)
        proc.stdin.close()
    return proc


def insert_card(args: argparse.Namespace) -> None:
    if not 0 <= args.index < args.persons:
        raise _fail(f"--index must be in 0..{args.persons - 1}")
    held = _slot_card(args.run_dir, args.slot)
    if held is not None:
        raise _fail(
            f"slot {args.slot} already holds person {held.index}'s card (vpicc pid {held.pid});"
            f" run `yikatong sim card remove --slot {args.slot}` first"
        )
    reader_name, port = slot_reader(args.run_dir, args.slot)
    keys = _card_keys(args)
    with PcscReader(reader_name) as reader:
        if reader.card_present():
            raise _fail(f"{reader_name} already holds a card that yikatong did not insert")
        args.run_dir.mkdir(parents=True, exist_ok=True)
        log_path = args.run_dir / f"card-slot{args.slot}.log"
        command = [
            *(sys.executable, "-m", "simulators.vpicc", "--index", str(args.index)),
            *("--mode", args.mode, "--seed", str(args.seed), "--persons", str(args.persons)),
            *("--slot", str(args.slot), "--port", str(port)),
        ]
        proc = _start_vpicc(command, keys, log_path)
        card = SlotCard(proc.pid, args.slot, args.index, args.mode, args.seed, args.persons, port)
        _slot_path(args.run_dir, args.slot).write_bytes(msgspec.json.encode(card))
        end = time.monotonic() + args.timeout
        while not reader.wait_for_card(min(POLL_S, max(0.0, end - time.monotonic()))):
            if proc.poll() is not None:
                _slot_path(args.run_dir, args.slot).unlink(missing_ok=True)
                tail = log_path.read_text(errors="replace").splitlines()[-5:]
                raise _fail(
                    f"the virtual card exited with status {proc.returncode}; {log_path}:\n"
                    + "\n".join(tail)
                )
            if time.monotonic() >= end:
                stop_pid(proc.pid)
                proc.wait()
                _slot_path(args.run_dir, args.slot).unlink(missing_ok=True)
                raise _fail(f"pcscd did not see the card in {reader_name} within {args.timeout}s")
    print(
        f"slot {args.slot} ({reader_name}): person {args.index}'s card inserted"
        f" (mode {args.mode}, vpicc pid {proc.pid}, log {log_path})"
    )


def remove_card(args: argparse.Namespace) -> None:
    path = _slot_path(args.run_dir, args.slot)
    card = _slot_card(args.run_dir, args.slot)
    if card is None:
        path.unlink(missing_ok=True)
        print(f"slot {args.slot}: no card inserted by yikatong")
        return
    reader_name, _ = slot_reader(args.run_dir, args.slot)
    try:
        stop_pid(card.pid, args.timeout)
    except PcscdError as exc:
        raise _fail(f"the virtual card would not stop: {exc}") from None
    path.unlink(missing_ok=True)
    with PcscReader(reader_name) as reader:
        try:
            empty = reader.wait_for_removal(args.timeout)
        except ReaderError as exc:
            raise _fail(f"card process stopped, but pcscd cannot be asked: {exc}") from None
    if not empty:
        raise _fail(f"pcscd still reports a card in {reader_name} after {args.timeout}s")
    print(f"slot {args.slot} ({reader_name}): card removed")


def print_status(args: argparse.Namespace) -> None:
    info = PcscdInfo.load(_pcscd_dir(args.run_dir) / "pcscd.json")
    if info is not None:
        where = "isolated network namespace" if info.isolated else "host network namespace"
        print(f"pcscd: pid {info.pid} (started by yikatong, {where}), vpcd port {info.port}")
    try:
        names = list_readers()
    except ReaderError as exc:
        print(f"pcscd: not reachable ({exc})")
        names = []
    if info is None and names:
        print(f"pcscd: running (not started by yikatong), readers: {', '.join(names)}")
    for slot in range(VPCD_SLOTS):
        card = _slot_card(args.run_dir, slot)
        held = (
            f"person {card.index}'s card, mode {card.mode}, vpicc pid {card.pid}"
            if card is not None
            else "no card inserted by yikatong"
        )
        present = "?"
        reader_name = info.readers[slot] if info is not None else _vpcd_reader(names, slot)
        if reader_name is not None and reader_name in names:
            with PcscReader(reader_name) as reader:
                try:
                    present = "card present" if reader.card_present() else "empty"
                except ReaderError as exc:
                    present = f"unknown ({exc})"
        print(f"slot {slot} ({reader_name or 'no reader'}): {present}; {held}")
