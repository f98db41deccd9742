"""The engine's HSM: opened from the config at start (a key file that cannot be
authenticated stops the engine with exit status 4), and every call timed and counted
in Prometheus by operation and backend."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

from engine.config import HsmConfig
from hsm.errors import HsmError
from hsm.keystore import KeyStore, KeyStoreError, load_master_key
from hsm.pkcs11 import Pkcs11Hsm
from hsm.pkcs11_worker import Pkcs11Error
from hsm.protocol import Hsm
from hsm.remote import RemoteHsm
from hsm.soft import SoftHsm

T = TypeVar("T")
PKCS11_PIN_ENV = "YIKATONG_HSM_PKCS11_PIN"
PKCS11_OPEN_DEADLINE_S = 10.0  # loading the module and logging in


class HsmSetupError(Exception):
    """The configured HSM cannot be opened."""


async def open_hsm(cfg: HsmConfig) -> Hsm:
    if cfg.backend == "pkcs11":
        pin = os.environ.get(PKCS11_PIN_ENV)
        if not pin:
            raise HsmSetupError(f"no PKCS#11 user PIN: set {PKCS11_PIN_ENV}")
        try:
            return await Pkcs11Hsm.open(
                cfg.pkcs11_module,
                cfg.pkcs11_token_label,
                pin,
                max_waiting=cfg.pkcs11_max_waiting,
                deadline_s=max(cfg.deadline_s, PKCS11_OPEN_DEADLINE_S),
                allow_composed_retail_mac=cfg.pkcs11_allow_composed_retail_mac,
            )
        except Pkcs11Error as exc:
            raise HsmSetupError(str(exc)) from exc
    if cfg.backend == "remote":
        # Connects on first use; /readyz tells whether the HSM answers.
        return RemoteHsm(cfg.remote_host, cfg.remote_port, pool_size=cfg.remote_pool_size)
    try:
        master = load_master_key(
            os.environ, Path(cfg.master_key_file) if cfg.master_key_file else None
        )
        return SoftHsm(KeyStore.load(Path(cfg.key_file), master))
    except KeyStoreError as exc:
        raise HsmSetupError(str(exc)) from exc


async def timed(metrics: object, backend: str, op: str, call: Awaitable[T]) -> T:
    """Await an HSM call, observing its latency and counting its errors by class."""
    started = time.perf_counter()
    try:
        return await call
    except HsmError as exc:
        metrics.hsm_errors.labels(op, backend, type(exc).__name__).inc()  # type: ignore[attr-defined]
        raise
    finally:
        metrics.hsm_latency.labels(op, backend).observe(time.perf_counter() - started)  # type: ignore[attr-defined]
