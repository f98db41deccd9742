"""What one request carries through its flow: the envelope, the terminal, the engine's
clock at arrival (`now`), the database handle under the request's deadline (`db`) and
the claimed nonce. Flows keep no per-request state on themselves (STYLE.md §2)."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.txn.db import TxDb
from settlement.policy import PolicyBook
from terminals.envelope import Envelope
from terminals.results import ResultCode


@dataclass(frozen=True)
class Terminal:
    terminal_id: str
    fixmedins_code: str
    level: str  # the institution's level, type and region, read with the terminal
    inst_type: str
    admdvs: str  # the treating region: the envelope's mdtrtarea_admvs must be it


@dataclass(frozen=True)
class Services:
    """Long-lived collaborators shared by all transactions."""

    policies: PolicyBook
    command_timeout_s: float
    # Random references the engine hands out (a card proof's cred_ref): n bytes as hex.
    # Injected like the clock, so that a test can name the reference it expects.
    random_hex: Callable[[int], str] = field(default=secrets.token_hex, kw_only=True)


@dataclass
class TxContext:
    envelope: Envelope
    # SHA-256 over infno and the raw `input` bytes: what idempotency compares (a retry
    # with a refreshed inf_time is the same request).
    request_sha256: bytes
    terminal: Terminal
    services: Services
    now: dt.datetime  # the engine's clock at arrival, local time of the platform
    db: TxDb
    nonce: str  # X-Yk-Nonce, claimed by the load
    nonce_expires: dt.datetime  # when its timestamp leaves the skew window
    input: Any = None  # the decoded input Struct (engine.txn.wire)
    code: ResultCode = ResultCode.ok
    err_msg: str | None = None

    def refuse(self, code: ResultCode, message: str) -> ResultCode:
        """Record a refusal the edge answers itself (a field error before any load)."""
        self.code = code
        self.err_msg = message
        return code
