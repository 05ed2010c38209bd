"""Naming a value in an error message ("expected a list, got a mapping")."""

from __future__ import annotations

from typing import Any


def describe(value: Any) -> str:
    """What ``value`` is, for a one-line error about a configuration or rules file."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"boolean {value}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"
