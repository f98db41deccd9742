"""The engine's HSM: opened from the config at start (a key file that cannot be
authenticated stops the engine with exit status 4), every call timed and counted in
Prometheus by operation and backend, and every HSM error turned into the engine's
answer by one function, `answer_for` (REVIEW.md §5: misconfiguration is not "try
again").

What an `HsmError` at request time becomes (the classes are hsm.errors'):

    kind           raised as                      answer
    unavailable    HsmUnavailable (unreachable,   503 + Retry-After, hsm_unavailable
                   deadline missed, token or      (9003); WARNING
                   session lost, token busy)
    misconfigured  HsmMisconfigured: KeyNotFound, 503 *without* Retry-After,
                   KeyTypeError, KeyLengthError,  hsm_misconfigured (9004); ERROR
                   KeyUsageError,
                   AlgorithmUnavailable, a peer
                   that does not speak the
                   remote protocol
    input_refused  HsmInputError (a length or     200, field_invalid (1002), as any
                   format the HSM refuses in the  other field error; WARNING
                   request's data)
    unclassified   any other HsmError (a token    as unavailable, logged at ERROR:
                   code without a meaning, a      nothing says it persists, and that
                   remote HSM's internal error)   was the answer before the split

Why 503 without Retry-After for misconfiguration, not 500: DESIGN.md promises that no
client input produces a 500, and a 500 here is what a bug answers (the middleware logs
a traceback). The keys are the server's configuration, so the server cannot serve the
request, which is 503; leaving out Retry-After, and the distinct result code (not
`retryable`, terminals.results), tell the client that waiting will not help and that
the operator must act. `VerificationFailed` never reaches here: every backend turns a
mismatch into `False`, a business outcome.

Logging is bounded: the first failure of a kind and message (a message names the key
label and the operation, never a value) is logged at the level above, then the same
one at most once per `REPORT_INTERVAL_S` (DEBUG in between, with the count of the ones
held back on the next report), for at most `REPORTED_MAX` distinct messages at a time.
Every failure is still counted by `timed` in yikatong_hsm_op_errors_total{op, backend,
kind}, kind being `metrics_kind` of the table's: unavailable, misconfigured, or other
(input_refused and unclassified, which need a look at the log).

Readiness: `readiness_problem` probes what every request needs, reachability and the
terminal MAC master (a verification of an empty signature, which must answer False),
so /readyz fails with the reason while the key everything depends on is missing or
unusable, and recovers by itself once it is fixed; a misconfigured card key is logged
and answered 9004 but leaves the engine ready for the transactions that do not use it.

Secrets in the environment: `open_hsm` reads the soft master key
(YIKATONG_HSM_MASTER_KEY) or the PKCS#11 PIN (YIKATONG_HSM_PKCS11_PIN) once and then
removes both from os.environ (`ENVIRON_SECRETS`), so that no process the engine starts
later (the embedded PostgreSQL, above all, which runs as another OS user) can inherit
them; every child is also started with `hsm.secret_guard.child_env()`. That is safe
because nothing reads them again: the backend keeps what it needs (the soft key store,
the PKCS#11 session's PIN for a re-login) in memory, and the configuration was decoded
before. A master key file (hsm.master_key_file, mode 0600) keeps the key out of the
environment altogether; docs/SECURITY.md.
"""

from __future__ import annotations

import enum
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from engine.config import HsmConfig
from engine.metrics import EngineMetrics
from hsm.errors import HsmError, HsmInputError, HsmMisconfigured, HsmUnavailable
from hsm.keystore import MASTER_KEY_ENV, KeyStore, KeyStoreError, load_master_key
from hsm.pkcs11 import Pkcs11Hsm
from hsm.pkcs11_worker import Pkcs11Error
from hsm.protocol import Hsm, KeyRef
from hsm.remote import RemoteHsm
from hsm.secret_guard import drop_from_environ
from hsm.soft import SoftHsm
from terminals.results import ResultCode

T = TypeVar("T")
# The operations `timed` measures: the `op` label's closed set.
HsmOp = Literal[
    "random_bytes",
    "verify_terminal_mac",
    "verify_card_cryptogram",
    "external_auth_cryptogram",
    "verify_signature",
]
HSM_OPS: tuple[HsmOp, ...] = get_args(HsmOp)
PKCS11_PIN_ENV = "YIKATONG_HSM_PKCS11_PIN"
ENVIRON_SECRETS = (MASTER_KEY_ENV, PKCS11_PIN_ENV)  # read once by open_hsm, then dropped
PKCS11_OPEN_DEADLINE_S = 10.0  # loading the module and logging in
REPORT_INTERVAL_S = 60.0  # one log line per kind and message per interval
REPORTED_MAX = 64  # distinct messages remembered for that; the oldest is forgotten
READINESS_TERMINAL_ID = "readyz"  # any valid terminal id: the probe's MAC never matches
READINESS_MAC = bytes(32)


class HsmSetupError(Exception):
    """The configured HSM cannot be opened."""


async def open_hsm(cfg: HsmConfig) -> Hsm:
    """The configured backend, opened; the environment's HSM secrets are gone from
    os.environ afterwards, whether or not the opening succeeded (module docstring)."""
    try:
        return await _open_hsm(cfg)
    finally:
        drop_from_environ(ENVIRON_SECRETS)


async def _open_hsm(cfg: HsmConfig) -> Hsm:
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


async def timed(metrics: EngineMetrics, backend: str, op: HsmOp, call: Awaitable[T]) -> T:
    """Await an HSM call, observing its latency and counting its errors by kind."""
    series = metrics.hsm_series(op, backend)
    started = time.perf_counter()
    try:
        return await call
    except HsmError as exc:
        series.errors[metrics_kind(exc)].inc()
        raise
    finally:
        series.latency.observe(time.perf_counter() - started)


# -- HSM errors as answers (module docstring) -----------------------------------------------


class HsmFailure(enum.Enum):
    unavailable = "unavailable"
    misconfigured = "misconfigured"
    input_refused = "input_refused"
    unclassified = "unclassified"


def metrics_kind(exc: HsmError) -> str:
    """The `kind` label of yikatong_hsm_op_errors_total (engine.metrics.HSM_ERROR_KINDS):
    an outage to wait out, a configuration to fix, or other (a value the HSM refused,
    an error without a meaning)."""
    kind = classify(exc)
    if kind in (HsmFailure.unavailable, HsmFailure.misconfigured):
        return kind.name
    return "other"


def classify(exc: HsmError) -> HsmFailure:
    if isinstance(exc, HsmUnavailable):
        return HsmFailure.unavailable
    if isinstance(exc, HsmMisconfigured):
        return HsmFailure.misconfigured
    if isinstance(exc, HsmInputError):
        return HsmFailure.input_refused
    return HsmFailure.unclassified


@dataclass(frozen=True, slots=True)
class HsmAnswer:
    """What the engine answers and logs for one HSM error."""

    kind: HsmFailure
    code: ResultCode
    status: int  # HTTP
    retry_after: bool
    log_level: int
    operator_message: str  # for the log and /readyz: class and message, never a value
    client_message: str  # the answer's err_msg: no key labels, no internals

    def log(self, logger: logging.Logger, **fields: Any) -> None:
        logger.log(
            self.log_level,
            self.operator_message,
            extra={"fields": {"hsm_failure": self.kind.value, "result": self.code.name, **fields}},
        )


# kind -> (code, HTTP status, Retry-After, log level when reported, err_msg)
_ANSWERS: dict[HsmFailure, tuple[ResultCode, int, bool, int, str]] = {
    HsmFailure.unavailable: (
        ResultCode.hsm_unavailable,
        503,
        True,
        logging.WARNING,
        "HSM unavailable; try again",
    ),
    HsmFailure.misconfigured: (
        ResultCode.hsm_misconfigured,
        503,
        False,
        logging.ERROR,
        "HSM misconfigured: the platform cannot serve this request until its operator"
        " fixes the HSM keys; retrying will not help",
    ),
    HsmFailure.input_refused: (
        ResultCode.field_invalid,
        200,
        False,
        logging.WARNING,
        "a value of the request was refused by the HSM",
    ),
    HsmFailure.unclassified: (
        ResultCode.hsm_unavailable,
        503,
        True,
        logging.ERROR,
        "HSM unavailable; try again",
    ),
}


class HsmFailureLog:
    """Bounded memory of the HSM failures reported lately, so that a failure every
    request hits is logged once per interval, not once per request."""

    def __init__(
        self,
        *,
        interval_s: float = REPORT_INTERVAL_S,
        capacity: int = REPORTED_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1 or not interval_s > 0:
            raise ValueError("HsmFailureLog needs capacity >= 1 and interval_s > 0")
        self.interval_s, self.capacity, self._clock = interval_s, capacity, clock
        # (kind, message) -> [time reported, held back since]; oldest report first
        self._reported: OrderedDict[tuple[HsmFailure, str], list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._reported)

    def note(self, kind: HsmFailure, message: str) -> int | None:
        """None to hold this one back, else how many were held back since the last
        report of the same failure (0 the first time)."""
        now = self._clock()
        slot = (kind, message)
        seen = self._reported.get(slot)
        if seen is not None and now - seen[0] < self.interval_s:
            seen[1] += 1
            return None
        held_back = 0 if seen is None else int(seen[1])
        self._reported.pop(slot, None)
        while len(self._reported) >= self.capacity:
            self._reported.popitem(last=False)
        self._reported[slot] = [now, 0]
        return held_back


FAILURES = HsmFailureLog()  # the process's: one HSM per engine process


def result_code_for(exc: HsmError) -> ResultCode:
    """The result code `answer_for` will answer, without noting anything: for counting
    an outcome (yikatong_card_auth_total) before re-raising to the endpoint, which
    answers and logs the error once."""
    return _ANSWERS[classify(exc)][0]


def answer_for(exc: HsmError, *, failures: HsmFailureLog = FAILURES) -> HsmAnswer:
    """The engine's answer to an HSM error raised while serving a request, and how to
    log it (call `.log(logger)`; the level is DEBUG when the same failure was reported
    less than `REPORT_INTERVAL_S` ago)."""
    kind = classify(exc)
    code, status, retry_after, level, client_message = _ANSWERS[kind]
    message = f"HSM {kind.value}: {type(exc).__name__}: {exc}"
    held_back = failures.note(kind, message)
    if held_back is None:
        level = logging.DEBUG
    elif held_back:
        message += f" ({held_back} more since the last report)"
    if kind is HsmFailure.input_refused:
        client_message += f" ({type(exc).__name__})"
    return HsmAnswer(kind, code, status, retry_after, level, message, client_message)


async def readiness_problem(
    hsm: Hsm, terminal_mac_master: KeyRef | None, *, deadline_s: float, metrics: EngineMetrics
) -> str | None:
    """None when the HSM answers and the terminal MAC master (if given) is usable,
    else the reason for /readyz ("hsm unavailable: ...", "hsm misconfigured: ...").
    Each probe has `deadline_s`; both are timed and counted like any HSM call."""
    try:
        await timed(
            metrics,
            hsm.backend,
            "random_bytes",
            hsm.random_bytes(8, deadline_s=deadline_s),
        )
        if terminal_mac_master is None:
            return None
        await timed(
            metrics,
            hsm.backend,
            "verify_terminal_mac",
            hsm.verify_terminal_mac(
                terminal_mac_master,
                READINESS_TERMINAL_ID,
                b"",
                READINESS_MAC,
                deadline_s=deadline_s,
            ),
        )
    except HsmError as exc:
        kind = classify(exc)
        label = "misconfigured" if kind is HsmFailure.misconfigured else "unavailable"
        return f"hsm {label}: {type(exc).__name__}: {exc}"
    return None
