"""Struct bases for transaction bodies."""

from __future__ import annotations

from msgspec import Struct


class In(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A request body node: unknown fields are refused, each field has a length."""


class Out(Struct, frozen=True, kw_only=True):
    """An answer body node (clients should ignore fields they do not know)."""
