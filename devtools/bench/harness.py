"""The shared pieces of every benchmark: timing, medians and the printed comparison."""

from __future__ import annotations

import gc
import importlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any


@dataclass(frozen=True)
class Options:
    """Command-line options every benchmark module receives."""

    quick: bool = False  #: fewer rounds and smaller bursts, for a smoke run in tests
    rounds: int = 5


@dataclass(frozen=True)
class Comparison:
    """One line of the report: our figure against an anchor's, measured in the same run.

    ``higher_is_better`` is True for rates (msg/s) and False for latencies.
    ``target`` is the ratio DESIGN.md asks for, ours/anchor for rates and anchor/ours for
    latencies, so that a ratio above the target always means "met".
    """

    name: str
    ours: float
    anchor: float
    anchor_name: str
    unit: str
    target: float | None = None
    higher_is_better: bool = True
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """How many times better than the anchor we are (above 1: better)."""
        if self.higher_is_better:
            return self.ours / self.anchor if self.anchor else float("inf")
        return self.anchor / self.ours if self.ours else float("inf")

    @property
    def met(self) -> bool | None:
        """Whether the target is met, or None when there is no target."""
        return None if self.target is None else self.ratio >= self.target


def configure_django() -> Any | None:
    """Django's settings, configured once for every benchmark that uses Django as an anchor.

    One place, because Django can be configured only once per process and each anchor needs
    its own settings (a secret for the token generator, a charset for the mail builder).
    Returns None when Django is not installed.
    """
    try:
        settings = importlib.import_module("django.conf").settings
    except ImportError:
        return None
    if not settings.configured:
        settings.configure(
            SECRET_KEY="bench-" + "k" * 48,
            PASSWORD_RESET_TIMEOUT=600,
            DEFAULT_CHARSET="utf-8",
            USE_TZ=True,
        )
    return settings


def rate(operation: Callable[[], object], count: int) -> float:
    """Calls per second of ``operation`` run ``count`` times back to back."""
    gc.collect()
    start = time.perf_counter()
    for _ in range(count):
        operation()
    return count / (time.perf_counter() - start)


def interleaved_medians(
    candidates: dict[str, Callable[[], float]], rounds: int
) -> dict[str, float]:
    """Run each candidate ``rounds`` times, alternating between them; return each median.

    Alternating spreads the machine's noise over every candidate instead of penalising
    whichever ran while something else was busy.
    """
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, measure in candidates.items():
            samples[name].append(measure())
    return {name: statistics.median(values) for name, values in samples.items()}


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` percentile (0-1) of ``values`` by nearest rank."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def format_table(comparisons: list[Comparison]) -> str:
    """The report printed by ``nox -s bench``."""
    header = f"{'benchmark':<44} {'ours':>12} {'anchor':>12}  {'ratio':>7} {'target':>7}  anchor"
    lines = [header, "-" * len(header)]
    for item in comparisons:
        target = "" if item.target is None else f">={item.target:g}x"
        verdict = {None: "", True: " ok", False: " MISSED"}[item.met]
        lines.append(
            f"{item.name:<44} {item.ours:>10.1f}{_short(item.unit)} "
            f"{item.anchor:>10.1f}{_short(item.unit)}  {item.ratio:>6.2f}x {target:>7}{verdict}"
            f"  {item.anchor_name} [{item.unit}]"
        )
        lines.extend(f"{'':<44}   note: {note}" for note in item.notes)
    return "\n".join(lines)


def _short(unit: str) -> str:
    return "  " if unit.endswith("/s") else "us" if unit == "us" else "  "


def reset_messages(count: int, *, tag: str, html: bool = True) -> list[EmailMessage]:
    """``count`` pre-built reset-like messages, each to its own address.

    Message-IDs are ``<{tag}{number}@bench.example.com>``, so a sink can count one burst.

    The same message for every sending benchmark, so their figures compare: a text part with a
    long reset link (and an HTML part), distinct recipients and Message-IDs that a sink can
    count.
    """
    link = f"https://app.example.com/reset/{'x' * 150}"
    messages = []
    for number in range(count):
        message = EmailMessage()
        message["From"] = "App <app@example.com>"
        message["To"] = f"user{number}@example.com"
        message["Subject"] = "Reset your password"
        message["Message-ID"] = f"<{tag}{number}@bench.example.com>"
        message.set_content(f"Hello,\n\nReset: {link}\n\nThe link expires in 10 minutes.\n")
        if html:
            message.add_alternative(
                f"<p>Hello,</p><p><a href='{link}'>Reset</a></p>", subtype="html"
            )
        messages.append(message)
    return messages
