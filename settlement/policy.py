"""Policy parameters as versioned data files, one per (insured region, scheme, year).

Files live in `settlement/policies/<region>-<insutype>-<year>.toml`; the shipped ones
hold the DOMAIN.md §4.8 Chengdu figures, which are unverified fixtures, not law. Each
file is decoded once into frozen Structs with every amount in fen and every ratio in
basis points; a file whose name disagrees with its content, or whose ratios name an
unknown level, is refused at load.
"""

from __future__ import annotations

import enum
import importlib.resources
import re
import tomllib
from importlib.resources.abc import Traversable
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

Fen = Annotated[int, Meta(ge=0, le=10**13)]
Bp = Annotated[int, Meta(ge=0, le=10_000)]
_FILE_RE = re.compile(r"^([0-9]{6})-([0-9]{3})-([0-9]{4})\.toml$")


class Level(enum.StrEnum):
    """Institution level (医院等级); pharmacies use the `pharmacy` ratio key."""

    community = "community"
    level1 = "1"
    level2 = "2"
    level3 = "3"


class InstitutionType(enum.StrEnum):
    hospital = "hospital"
    pharmacy = "pharmacy"


PHARMACY_KEY = "pharmacy"
_RATIO_KEYS = {lv.value for lv in Level} | {PHARMACY_KEY}


class PolicyNotFound(KeyError):
    """No policy file for this region, scheme and year."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "policy not found"


class PolicyFileError(ValueError):
    """A policy file that cannot be used."""


class RatioBp(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    employed: Bp
    retired: Bp

    def for_person(self, retired: bool) -> int:
        return self.retired if retired else self.employed


class OutpatientPolicy(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    deductible_fen_employed: Fen
    deductible_fen_retired: Fen
    annual_limit_fen_employed: Fen
    annual_limit_fen_retired: Fen
    # Keyed by level value or "pharmacy"; a missing key means no pooling there.
    ratio_bp: dict[str, RatioBp]


class InpatientPolicy(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    deductible_fen: dict[str, Fen]
    ratio_bp: dict[str, RatioBp]


class PolicyParams(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    region: Annotated[str, Meta(pattern=r"^[0-9]{6}$")]
    insutype: Literal["310", "390"]
    year: Annotated[int, Meta(ge=2000, le=2200)]
    version: Annotated[int, Meta(ge=1)]
    name: str
    fund_annual_cap_fen: Fen
    personal_account: bool
    account_covers_self_pay: bool
    outpatient: OutpatientPolicy
    inpatient: InpatientPolicy


def _validate(params: PolicyParams, filename: str) -> None:
    match = _FILE_RE.match(filename)
    if match is None:
        raise PolicyFileError(f"{filename}: name is not <region>-<insutype>-<year>.toml")
    if (params.region, params.insutype, str(params.year)) != match.groups():
        raise PolicyFileError(f"{filename}: region, insutype or year differs from the file name")
    for where, keys in (
        ("outpatient.ratio_bp", params.outpatient.ratio_bp),
        ("inpatient.ratio_bp", params.inpatient.ratio_bp),
        ("inpatient.deductible_fen", params.inpatient.deductible_fen),
    ):
        unknown = set(keys) - _RATIO_KEYS
        if unknown:
            raise PolicyFileError(f"{filename}: {where} has unknown level(s) {sorted(unknown)}")


def load_policy(filename: str, text: str) -> PolicyParams:
    try:
        params = msgspec.convert(tomllib.loads(text), PolicyParams)
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise PolicyFileError(f"{filename}: {exc}") from exc
    _validate(params, filename)
    return params


class PolicyBook:
    """Every policy file of a directory (the packaged one by default)."""

    def __init__(self, directory: Traversable | None = None) -> None:
        root = directory or importlib.resources.files("settlement") / "policies"
        self._policies: dict[tuple[str, str, int], PolicyParams] = {}
        for entry in sorted(root.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".toml"):
                p = load_policy(entry.name, entry.read_text(encoding="utf-8"))
                self._policies[(p.region, p.insutype, p.year)] = p

    def __len__(self) -> int:
        return len(self._policies)

    def get(self, region: str, insutype: str, year: int) -> PolicyParams:
        try:
            return self._policies[(region, insutype, year)]
        except KeyError:
            raise PolicyNotFound(
                f"no policy for insured region {region}, scheme {insutype}, year {year}"
            ) from None
