"""`yikatong hsm ...`: manage the HSM's keys — the soft backend's key file, or (init and
list) a PKCS#11 token.

    yikatong hsm new-master-key        print a new 32-byte master key (64 hex digits)
    yikatong hsm init [--force]        create the key file with the demo key hierarchy
    yikatong hsm list                  labels, versions, types, usages, check values
    yikatong hsm import --kek L --label L --version N --usage U BLOCK|-
    yikatong hsm export --kek L --label L [--version N]   wrapped, for backup
    yikatong hsm export --kek KBPK --terminal-id T        terminal T's MAC key, wrapped
    yikatong hsm install-terminal-key --key-file F --kbpk-file K BLOCK|-

Values are never printed: listings show check values only, import and export take
and give TR-31 / X9.143 key blocks wrapped under a key-encryption key.

`export --terminal-id` gives the terminal's request-signing key (derived from the
terminal MAC master, never stored) as a version D block with a MAC key's header (M7,
HMAC, mode C, not exportable), wrapped under that terminal's KBPK. On the terminal,
`install-terminal-key` checks the block under the terminal's copy of the KBPK (a 0600
file) and writes it to the terminal's key file, still wrapped, mode 0600
(terminals.keyfile); it needs neither a configuration nor a master key.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from engine.config import Config
from engine.hsm_runtime import HsmSetupError, open_hsm
from hsm import soft_admin
from hsm.errors import HsmError
from hsm.keystore import KeyStore, KeyStoreError, load_master_key, new_master_key_hex
from hsm.pkcs11 import Pkcs11Hsm
from hsm.protocol import KeyInfo
from terminals.keyfile import KeyFileError, install_terminal_key


class HsmCommandError(Exception):
    """The key file or the request cannot be used; the CLI exits with EXIT_HSM."""


def add_commands(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    hsm = commands.add_parser("hsm", help="HSM keys: init, list, import, export")
    actions = hsm.add_subparsers(dest="hsm_command", required=True, metavar="ACTION")
    with_config(
        actions.add_parser("new-master-key", help="print a new master key for the soft backend")
    )
    init = with_config(actions.add_parser("init", help="create the key file with the demo keys"))
    init.add_argument("--force", action="store_true", help="replace an existing key file")
    with_config(actions.add_parser("list", help="list keys (never values)"))
    imp = with_config(actions.add_parser("import", help="import a key from a key block"))
    imp.add_argument("--kek", required=True, help="label of the key-encryption key")
    imp.add_argument("--label", required=True)
    imp.add_argument("--version", type=int, default=1)
    imp.add_argument("--usage", required=True)
    imp.add_argument("block", help="the key block, or - to read it from standard input")
    exp = with_config(actions.add_parser("export", help="export a key wrapped, for backup"))
    exp.add_argument("--kek", required=True)
    which = exp.add_mutually_exclusive_group(required=True)
    which.add_argument("--label", help="a key of the key file")
    which.add_argument("--terminal-id", help="that terminal's MAC key, for key injection")
    exp.add_argument("--version", type=int)
    inst = with_config(
        actions.add_parser(
            "install-terminal-key",
            help="on a terminal: store its MAC key from a key block, still wrapped",
        )
    )
    inst.add_argument("--key-file", required=True, type=Path, help="the terminal's key file")
    inst.add_argument(
        "--kbpk-file", required=True, type=Path, help="the terminal's KBPK, hex, mode 0600"
    )
    inst.add_argument("block", help="the key block, or - to read it from standard input")


def _master(cfg: Config) -> bytes:
    path = Path(cfg.hsm.master_key_file) if cfg.hsm.master_key_file else None
    return load_master_key(os.environ, path)


def run(cfg: Config, args: argparse.Namespace) -> None:
    try:
        _run(cfg, args)
    except (KeyStoreError, HsmError, KeyFileError) as exc:
        raise HsmCommandError(str(exc)) from exc


def _block_argument(text: str) -> str:
    return sys.stdin.read().strip() if text == "-" else text


def _run(cfg: Config, args: argparse.Namespace) -> None:
    if args.hsm_command == "new-master-key":
        print(new_master_key_hex())
        return
    if args.hsm_command == "install-terminal-key":
        _install_terminal_key(args)
        return
    if cfg.hsm.backend != "soft":
        asyncio.run(_run_on_hsm(cfg, args))
        return
    key_file = Path(cfg.hsm.key_file)
    master = _master(cfg)
    if args.hsm_command == "init":
        if key_file.exists() and not args.force:
            raise HsmCommandError(f"{key_file} exists; use --force to replace it")
        key_file.parent.mkdir(parents=True, exist_ok=True)
        store = KeyStore(soft_admin.demo_hierarchy())
        store.save(key_file, master)
        print(f"created {key_file} with {len(store.entries())} keys")
        _print(store)
        return
    store = KeyStore.load(key_file, master)
    if args.hsm_command == "list":
        _print(store)
    elif args.hsm_command == "import":
        block = _block_argument(args.block)
        new = soft_admin.import_key_block(
            store,
            kek_label=args.kek,
            key_block=block,
            label=args.label,
            version=args.version,
            usage=args.usage,
        )
        store.save(key_file, master)
        print(f"imported {new.label} v{new.version} {new.key_type} KCV {new.check_value}")
    else:
        print(_export(cfg, store, args))


def _install_terminal_key(args: argparse.Namespace) -> None:
    installed = install_terminal_key(_block_argument(args.block), args.key_file, args.kbpk_file)
    print(
        f"installed a {installed.key_bytes}-byte terminal MAC key (version"
        f" {installed.key_version}, mode {installed.mode_of_use}) in {installed.path},"
        " wrapped under the KBPK"
    )


def _export(cfg: Config, store: KeyStore, args: argparse.Namespace) -> str:
    if args.terminal_id is None:
        return soft_admin.export_key_block(
            store, kek_label=args.kek, label=args.label, version=args.version
        )
    if args.version is not None:
        raise HsmCommandError(
            "--version names a version of --label; a terminal key's version is its"
            " MAC master's (the newest)"
        )
    return soft_admin.export_terminal_key_block(
        store,
        kek_label=args.kek,
        master_label=cfg.hsm.terminal_mac_master,
        terminal_id=args.terminal_id,
    )


async def _run_on_hsm(cfg: Config, args: argparse.Namespace) -> None:
    """init and list on a PKCS#11 token or a remote HSM, through the Hsm protocol."""
    if args.hsm_command not in ("init", "list"):
        raise HsmCommandError(
            f"'hsm {args.hsm_command}' is implemented for the soft backend only: this"
            f" {cfg.hsm.backend} HSM has no key-block {args.hsm_command} here, and a key is"
            " never unwrapped or wrapped outside an HSM"
        )
    try:
        hsm = await open_hsm(cfg.hsm)
    except HsmSetupError as exc:
        raise HsmCommandError(str(exc)) from exc
    try:
        deadline_s = max(cfg.hsm.deadline_s, 10.0)
        if args.hsm_command == "init":
            if not isinstance(hsm, Pkcs11Hsm):
                raise HsmCommandError("'hsm init' on a remote HSM: initialise it on its own side")
            existing = await hsm.list_keys(deadline_s=deadline_s)
            if existing and not args.force:
                raise HsmCommandError(f"the token holds {len(existing)} keys already; use --force")
            # The demo hierarchy is generated here and created on the token as sensitive,
            # non-extractable objects: a demo, not a key ceremony.
            refused = await hsm.import_test_keys(soft_admin.demo_hierarchy(), deadline_s=deadline_s)
            for label, refusal in refused.items():
                print(f"not created: {label}: {refusal}")
        _print_keys(await hsm.list_keys(deadline_s=deadline_s))
    finally:
        await hsm.close()


def _print(store: KeyStore) -> None:
    _print_keys(
        KeyInfo(e.label, e.version, e.key_type.value, e.usage, e.check_value)
        for e in store.entries()
    )


def _print_keys(keys: Iterable[KeyInfo]) -> None:
    print(f"{'label':<22} {'v':>3} {'type':<8} {'usage':<28} kcv")
    for k in keys:
        print(f"{k.label:<22} {k.version:>3} {k.key_type:<8} {k.usage:<28} {k.check_value}")
