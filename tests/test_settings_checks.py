"""Numeric settings: one check refuses booleans, NaN and bad ranges, naming the setting."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from mailreset import ConfigurationError, SMTPSettings
from mailreset.mailers import Retry
from mailreset.reset import MemoryRateLimiter, NISTPasswordPolicy

NAN = float("nan")

BAD: list[tuple[str, Callable[[object], object]]] = [
    ("Retry.attempts", lambda value: Retry(attempts=value)),  # type: ignore[arg-type]
    ("Retry.initial", lambda value: Retry(initial=value)),  # type: ignore[arg-type]
    ("Retry.deadline", lambda value: Retry(deadline=value)),  # type: ignore[arg-type]
    ("SMTPSettings.port", lambda value: SMTPSettings(port=value)),  # type: ignore[arg-type]
    ("SMTPSettings.timeout", lambda value: SMTPSettings(timeout=value)),  # type: ignore[arg-type]
    ("MemoryRateLimiter.window", lambda value: MemoryRateLimiter(window=value)),  # type: ignore[arg-type]
    ("MemoryRateLimiter.per_client", lambda value: MemoryRateLimiter(per_client=value)),  # type: ignore[arg-type]
    ("NISTPasswordPolicy.min_length", lambda value: NISTPasswordPolicy(min_length=value)),  # type: ignore[arg-type]
    ("NISTPasswordPolicy.max_length", lambda value: NISTPasswordPolicy(max_length=value)),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("name", "make"), BAD, ids=[name for name, _ in BAD])
@pytest.mark.parametrize("value", [True, False, "10", None, NAN, -1])
def test_a_bad_number_is_refused_by_name(
    name: str, make: Callable[[object], object], value: object
) -> None:
    """Booleans, text, None, NaN and negative numbers raise ConfigurationError naming the field."""
    with pytest.raises(ConfigurationError, match=rf"^{name} must "):
        make(value)


@pytest.mark.parametrize(
    ("make", "field", "expected"),
    [
        (lambda: Retry(initial=0, deadline=0.5), "initial", 0),
        (lambda: SMTPSettings(port=65535, timeout=0.25), "timeout", 0.25),
        (lambda: MemoryRateLimiter(window=timedelta(minutes=2)), "window", 120.0),
        (lambda: MemoryRateLimiter(window=7), "window", 7.0),
    ],
)
def test_good_numbers_pass(make: Callable[[], object], field: str, expected: float) -> None:
    """Zero backoff, fractions of a second and timedeltas are accepted as they were."""
    assert expected == getattr(make(), field)


def test_zero_is_refused_where_it_makes_no_sense() -> None:
    """A zero timeout or window would fail every send or allow nothing: refused."""
    for make in (lambda: SMTPSettings(timeout=0), lambda: MemoryRateLimiter(window=0)):
        with pytest.raises(ConfigurationError, match="positive number of seconds"):
            make()
