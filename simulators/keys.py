"""Terminal keys for the simulated terminals.

A real terminal receives its request-signing key once, at key injection, wrapped in
a key block. The simulators stand in for that step: they read the terminal MAC
master from the demo key file (the same file the engine's soft HSM uses, with the
master key from the 0600 file named by YIKATONG_HSM_MASTER_KEY_FILE, else from
YIKATONG_HSM_MASTER_KEY: hsm.keystore.load_master_key) and derive each terminal's
key with the same function the HSM uses (hsm.terminalkeys). Test rigs only:
production code never sees a terminal key (a terminal installs its own, wrapped:
terminals.keyfile).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from hsm.keys import aes
from hsm.keystore import KeyStore, load_master_key
from hsm.terminalkeys import derive_terminal_mac_key

DEFAULT_KEY_FILE = "var/hsm/keys.json"
MASTER_LABEL = "terminal.mac.master"


def terminal_keys_from(key_file: Path, master_key: bytes) -> Callable[[str], bytes]:
    master = aes(KeyStore.load(key_file, master_key).get(MASTER_LABEL).material)
    return lambda terminal_id: derive_terminal_mac_key(master, terminal_id).material


def terminal_keys_from_env(env: Mapping[str, str] | None = None) -> Callable[[str], bytes]:
    """Keys derived from the key file named by YIKATONG_HSM_KEY_FILE (or the default)."""
    env = os.environ if env is None else env
    key_file = Path(env.get("YIKATONG_HSM_KEY_FILE") or DEFAULT_KEY_FILE)
    return terminal_keys_from(key_file, load_master_key(env))
