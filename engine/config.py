"""Engine configuration: a TOML file plus `YIKATONG_*` environment overrides, decoded
once into a frozen msgspec Struct.

Every tunable has a type, a default and bounds here; `deploy/yikatong.example.toml`
documents each key. Precedence: defaults < file < environment. An environment variable
`YIKATONG_<SECTION>_<KEY>` overrides `[section] key` (for example `YIKATONG_SERVER_PORT`,
`YIKATONG_DATABASE_URL`); `YIKATONG_CONFIG` names the file. A bad configuration (unknown
key, wrong type, out-of-range value, unreadable file) raises `ConfigError`, whose
message is one line naming the key; the CLI turns it into exit status 2.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

ENV_PREFIX = "YIKATONG_"
ENV_CONFIG_FILE = "YIKATONG_CONFIG"
# Environment variables of ours that are not configuration keys (a secret is never a
# config value: the soft HSM's master key comes from here or hsm.master_key_file).
ENV_NOT_CONFIG = frozenset({ENV_CONFIG_FILE, "YIKATONG_HSM_MASTER_KEY", "YIKATONG_HSM_PKCS11_PIN"})

Port = Annotated[int, Meta(ge=0, le=65535)]
Seconds = Annotated[float, Meta(gt=0.0, le=3600.0)]
PoolSize = Annotated[int, Meta(ge=1, le=500)]


class ConfigError(Exception):
    """A configuration that cannot be used; `str()` is one line naming the key."""

    def __init__(self, key: str, reason: str, source: str = "") -> None:
        self.key = key
        self.reason = reason
        self.source = source
        where = f" ({source})" if source else ""
        super().__init__(f"config error: {key}: {reason}{where}")


class ServerConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    host: str = "127.0.0.1"
    port: Port = 8080
    shutdown_grace_s: Seconds = 10.0
    request_timeout_s: Seconds = 30.0
    access_log: bool = True
    debug_routes: bool = False


class DatabaseConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    url: str = ""
    embedded_data_dir: str = "var/pg"
    embedded_start_timeout_s: Seconds = 30.0
    embedded_stop_timeout_s: Seconds = 30.0
    embedded_max_connections: Annotated[int, Meta(ge=10, le=2000)] = 100
    migrate_on_start: bool = True
    pool_min_size: PoolSize = 2
    pool_max_size: PoolSize = 10
    connect_timeout_s: Seconds = 5.0
    acquire_timeout_s: Seconds = 2.0
    command_timeout_s: Seconds = 5.0
    ready_timeout_s: Seconds = 1.0
    max_inactive_connection_lifetime_s: Seconds = 300.0

    def __post_init__(self) -> None:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError(f"pool_min_size: must not exceed pool_max_size ({self.pool_max_size})")
        if not self.url and self.pool_max_size >= self.embedded_max_connections:
            raise ValueError(
                "pool_max_size: must stay below embedded_max_connections"
                f" ({self.embedded_max_connections})"
            )


class HsmConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    backend: Literal["soft", "remote", "pkcs11"] = "soft"
    key_file: str = "var/hsm/keys.json"
    master_key_file: str = ""
    remote_host: str = "127.0.0.1"
    remote_port: Port = 1500
    remote_pool_size: Annotated[int, Meta(ge=1, le=64)] = 4
    pkcs11_module: str = "/usr/lib/softhsm/libsofthsm2.so"
    pkcs11_token_label: str = "yikatong"
    pkcs11_max_waiting: Annotated[int, Meta(ge=1, le=100_000)] = 1000
    pkcs11_allow_composed_retail_mac: bool = False
    terminal_mac_master: str = "terminal.mac.master"
    deadline_s: Seconds = 0.5
    card_int_3des: str = "card.int.3des"
    card_int_sm4: str = "card.int.sm4"
    card_ext_3des: str = "card.ext.3des"
    card_ext_sm4: str = "card.ext.sm4"
    ecard_sign: str = "ecard.sign"


class LedgerConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    seal_interval_s: Seconds = 5.0
    seal_batch_max: Annotated[int, Meta(ge=1, le=1_000_000)] = 10_000


class CardConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    purge_interval_s: Seconds = 30.0
    purge_batch_max: Annotated[int, Meta(ge=1, le=1_000_000)] = 10_000


class LogConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    level: Literal["debug", "info", "warning", "error"] = "info"


class Config(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    ledger: LedgerConfig = LedgerConfig()
    hsm: HsmConfig = HsmConfig()
    card: CardConfig = CardConfig()
    log: LogConfig = LogConfig()

    @property
    def embedded_database(self) -> bool:
        """True when the engine starts its own PostgreSQL (no URL configured)."""
        return not self.database.url


_SECTIONS: dict[str, type[Struct]] = {
    "server": ServerConfig,
    "database": DatabaseConfig,
    "ledger": LedgerConfig,
    "hsm": HsmConfig,
    "card": CardConfig,
    "log": LogConfig,
}

_PATH_RE = re.compile(r" - at `\$((?:\.[A-Za-z0-9_]+)*)`$")
_UNKNOWN_RE = re.compile(r"^Object contains unknown field `([^`]+)`")
_FIELD_REASON_RE = re.compile(r"^([a-z_]+): (.*)$")


def _parse_env_value(raw: str, default: object, var: str) -> object:
    """Convert an environment string to the type of the field's default value."""
    if isinstance(default, bool):
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(var, f"expected a boolean (true/false), got {raw!r}", "environment")
    if isinstance(default, int):
        try:
            return int(raw.strip())
        except ValueError:
            raise ConfigError(var, f"expected an integer, got {raw!r}", "environment") from None
    if isinstance(default, float):
        try:
            return float(raw.strip())
        except ValueError:
            raise ConfigError(var, f"expected a number, got {raw!r}", "environment") from None
    return raw


def _env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or var in ENV_NOT_CONFIG:
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        cls = _SECTIONS.get(section)
        if cls is None or key not in cls.__struct_fields__:
            raise ConfigError(var, "unknown setting", "environment")
        default = getattr(cls(), key)
        out.setdefault(section, {})[key] = _parse_env_value(env[var], default, var)
    return out


def _read_file(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError("file", f"cannot read: {exc.strerror}", str(path)) from exc
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError("file", f"not valid TOML: {exc}", str(path)) from exc


def _merge(base: dict[str, Any], overrides: dict[str, dict[str, object]]) -> dict[str, Any]:
    merged = dict(base)
    for section, values in overrides.items():
        current = merged.get(section)
        if current is not None and not isinstance(current, dict):
            raise ConfigError(section, "expected a table")
        merged[section] = {**(current or {}), **values}
    return merged


def _validation_error(exc: msgspec.ValidationError, source: str) -> ConfigError:
    text = str(exc)
    path_match = _PATH_RE.search(text)
    path = path_match.group(1).lstrip(".") if path_match else ""
    reason = text[: path_match.start()] if path_match else text
    unknown = _UNKNOWN_RE.match(reason)
    if unknown:
        key = f"{path}.{unknown.group(1)}" if path else unknown.group(1)
        return ConfigError(key, "unknown key", source)
    field_reason = _FIELD_REASON_RE.match(reason)
    if field_reason:  # raised by a section's __post_init__ cross-field check
        key = f"{path}.{field_reason.group(1)}" if path else field_reason.group(1)
        return ConfigError(key, field_reason.group(2), source)
    return ConfigError(path or "config", reason[:1].lower() + reason[1:], source)


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Decode the configuration once: defaults, then the file, then the environment."""
    env = os.environ if env is None else env
    if path is None and env.get(ENV_CONFIG_FILE):
        path = Path(env[ENV_CONFIG_FILE])
    data: dict[str, Any] = _read_file(path) if path is not None else {}
    overrides = _env_overrides(env)
    source = ", ".join(
        s for s in (str(path) if path else "", "environment" if overrides else "") if s
    )
    try:
        return msgspec.convert(_merge(data, overrides), Config)
    except msgspec.ValidationError as exc:
        raise _validation_error(exc, source or "defaults") from exc
