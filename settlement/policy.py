"""Policy parameters as versioned data files, one per (insured region, scheme, year).

Files live in `settlement/policies/<region>-<insutype>-<year>.toml` and are found
through importlib.resources, so an installed wheel finds them too. The shipped ones are
for three Sichuan regions: Chengdu 510100 (the DOMAIN.md §4.8 figures), Mianyang 510700
and Leshan 511100 (made-up figures that differ) — all unverified fixtures [U], not law.
A person's insured region decides which applies, also when treated elsewhere.

Invariants kept at load (a file breaking one is refused with `PolicyFileError`, never
half-used): every amount is fen in 0..AMOUNT_FEN_MAX and every ratio basis points in
0..10000 (msgspec.Meta); the file name agrees with region, insutype and year inside;
ratio keys are institution levels ("community", "1", "2", "3") plus "pharmacy" for
outpatient only; every level with an inpatient ratio has an inpatient deductible; the
cross-region ratio factors name every filing status.
A missing ratio key means "no pooled payment at that level" (ratio 0).
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

from settlement.money import AMOUNT_FEN_MAX

Fen = Annotated[int, Meta(ge=0, le=AMOUNT_FEN_MAX)]
Bp = Annotated[int, Meta(ge=0, le=10_000)]
_FILE_RE = re.compile(r"^([0-9]{6})-([0-9]{3})-([0-9]{4})\.toml$")


class Level(enum.StrEnum):
    """Institution level (医院等级); pharmacies use the `pharmacy` ratio key."""

    community = "community"
    level1 = "1"
    level2 = "2"
    level3 = "3"


class InstitutionType(enum.StrEnum):
    """Kind of designated institution (定点医药机构)."""

    hospital = "hospital"
    pharmacy = "pharmacy"


PHARMACY_KEY = "pharmacy"
_LEVEL_KEYS = frozenset(lv.value for lv in Level)
_OUTPATIENT_KEYS = _LEVEL_KEYS | {PHARMACY_KEY}


class PolicyNotFound(KeyError):
    """No policy file for this region, scheme and year."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "policy not found"


class PolicyFileError(ValueError):
    """A policy file that cannot be used."""


class RatioBp(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The fund's share of eligible cost above the deductible, by employment status."""

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
    # 先个人账户后统筹 at pharmacies: the account pays first, the pool only what it left.
    pharmacy_account_first: bool = False


class InpatientPolicy(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    deductible_fen: dict[str, Fen]
    ratio_bp: dict[str, RatioBp]


class Filing(enum.StrEnum):
    """A person's cross-region filing status for a treating region (异地就医备案,
    DOMAIN.md §4.7): filed there (long-term residence, work), referred there by a
    hospital at home (转诊), or neither (temporary, emergency)."""

    filed = "filed"
    referral = "referral"
    unfiled = "unfiled"


class CrossRegionPolicy(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """异地就医: the treating region's catalog decides what is in scope, this (the
    insured region's) policy what is paid — its ratios times the factor of the
    person's filing status for the treating region."""

    ratio_factor_bp: dict[Literal["filed", "referral", "unfiled"], Bp]

    def factor_bp(self, filing: Filing) -> int:
        return self.ratio_factor_bp[filing.value]


class PolicyParams(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    region: Annotated[str, Meta(pattern=r"^[0-9]{6}$")]
    insutype: Literal["310", "390"]
    year: Annotated[int, Meta(ge=2000, le=2200)]
    version: Annotated[int, Meta(ge=1)]
    name: str
    fund_annual_cap_fen: Fen
    personal_account: bool
    account_covers_self_pay: bool
    # A 2201 / 2207 may name the patient by ID number (mdtrt_cert_type 02); false: the
    # card or e-card only, proven by a 1101 (settlement/proofs.py).
    settle_by_id_number: bool
    outpatient: OutpatientPolicy
    inpatient: InpatientPolicy
    cross_region: CrossRegionPolicy


def _validate(params: PolicyParams, filename: str) -> None:
    match = _FILE_RE.match(filename)
    if match is None:
        raise PolicyFileError(f"{filename}: name is not <region>-<insutype>-<year>.toml")
    if (params.region, params.insutype, str(params.year)) != match.groups():
        raise PolicyFileError(f"{filename}: region, insutype or year differs from the file name")
    inp = params.inpatient
    for where, keys, allowed in (
        ("outpatient.ratio_bp", params.outpatient.ratio_bp, _OUTPATIENT_KEYS),
        ("inpatient.ratio_bp", inp.ratio_bp, _LEVEL_KEYS),
        ("inpatient.deductible_fen", inp.deductible_fen, _LEVEL_KEYS),
    ):
        unknown = set(keys) - allowed
        if unknown:
            raise PolicyFileError(f"{filename}: {where} has unknown level(s) {sorted(unknown)}")
    factors = set(params.cross_region.ratio_factor_bp)
    if factors != {f.value for f in Filing}:
        raise PolicyFileError(
            f"{filename}: cross_region.ratio_factor_bp needs exactly filed, referral and"
            f" unfiled (has {sorted(factors)})"
        )
    missing = set(inp.ratio_bp) - set(inp.deductible_fen)
    if missing:
        raise PolicyFileError(
            f"{filename}: inpatient.deductible_fen lacks level(s) {sorted(missing)}"
            " that inpatient.ratio_bp pays at"
        )


def load_policy(filename: str, text: str) -> PolicyParams:
    """Decode and check one policy file's text; `filename` is its base name."""
    try:
        params = msgspec.convert(tomllib.loads(text), PolicyParams)
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise PolicyFileError(f"{filename}: {exc}") from exc
    _validate(params, filename)
    return params


DEFAULT_POLICY_DIR: Traversable = importlib.resources.files("settlement") / "policies"


class PolicyBook:
    """Every policy file of a directory (the packaged one by default)."""

    def __init__(self, directory: Traversable | None = None) -> None:
        """Load every `*.toml` of `directory` (a pathlib.Path will do); refuse any bad one."""
        root = directory if directory is not None else DEFAULT_POLICY_DIR
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
