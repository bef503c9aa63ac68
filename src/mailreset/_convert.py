"""attrs converters shared by the value objects (typed, unlike bare builtins)."""

from __future__ import annotations

from collections.abc import Iterable


def to_tuple(values: Iterable[str]) -> tuple[str, ...]:
    """Any iterable of strings as a tuple."""
    return tuple(values)
