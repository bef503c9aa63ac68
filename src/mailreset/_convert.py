"""attrs converters and validators shared by the value objects (typed, unlike builtins)."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from mailreset.errors import ConfigurationError


def to_tuple(values: Iterable[str]) -> tuple[str, ...]:
    """Any iterable of strings as a tuple."""
    return tuple(values)


def positive_int(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    """attrs validator: a whole number of at least 1 (booleans refused), named on error."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            f"{type(instance).__name__}.{attribute.name} must be a whole number >= 1, "
            f"not {value!r}"
        )
