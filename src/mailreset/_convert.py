"""Checks and converters shared by the settings of every public class (typed, unlike builtins).

Each check names the setting it refuses (``"SMTPSettings.timeout"``, ``"workers"``) and raises
:class:`~mailreset.errors.ConfigurationError`. Booleans are refused wherever a number is
expected: ``True`` is an ``int`` to Python, but ``timeout=True`` is a mistake, not one second.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any, TypeGuard

import attrs

from mailreset.errors import ConfigurationError


def to_tuple(values: Iterable[str]) -> tuple[str, ...]:
    """Any iterable of strings as a tuple."""
    return tuple(values)


def is_number(value: object) -> TypeGuard[int | float]:
    """True for an int or a float, False for anything else, booleans included."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_whole(value: object) -> TypeGuard[int]:
    """True for an int, False for anything else, booleans included."""
    return isinstance(value, int) and not isinstance(value, bool)


def whole_number(name: str, value: object, *, minimum: int = 1, unit: str = "") -> int:
    """``value`` if it is a whole number of at least ``minimum``; else a ConfigurationError.

    ``unit`` (``"seconds"``) goes into the message: "must be a whole number of seconds >= 1".
    """
    if not is_whole(value) or value < minimum:
        of_unit = f" of {unit}" if unit else ""
        raise ConfigurationError(
            f"{name} must be a whole number{of_unit} >= {minimum}, not {value!r}"
        )
    return value


def seconds(name: str, value: object, *, zero: bool = False) -> float:
    """``value`` as a float if it is a number of seconds > 0 (>= 0 with ``zero``); NaN refused."""
    if not is_number(value) or not (value >= 0 if zero else value > 0):
        what = "a number of seconds >= 0" if zero else "a positive number of seconds"
        raise ConfigurationError(f"{name} must be {what}, not {value!r}")
    return float(value)


def duration(name: str, value: object) -> float:
    """Seconds (a number) or a timedelta, as float seconds; the range is the caller's to check."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if not is_number(value):
        raise ConfigurationError(
            f"{name} must be a number of seconds or a timedelta, not {value!r}"
        )
    return float(value)


def _setting(instance: object, attribute: attrs.Attribute[Any]) -> str:
    return f"{type(instance).__name__}.{attribute.name}"


def positive_int(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    """attrs validator: a whole number of at least 1, named on error."""
    whole_number(_setting(instance, attribute), value)


def positive_seconds(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    """attrs validator: a number of seconds > 0, named on error."""
    seconds(_setting(instance, attribute), value)


def non_negative_seconds(
    instance: object, attribute: attrs.Attribute[float], value: float
) -> None:
    """attrs validator: a number of seconds >= 0, named on error."""
    seconds(_setting(instance, attribute), value, zero=True)


def env_prefix_setting(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    """attrs validator: a prefix of environment variable names (``MAIL_``), named on error."""
    if not isinstance(value, str) or not value.replace("_", "").isalnum():
        raise ConfigurationError(
            f"{_setting(instance, attribute)} must be an environment variable prefix such as "
            f"'MAIL_', not {value!r}"
        )
