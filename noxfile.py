"""Sessions: tests, lint, typecheck, bench, sink, demo (``nox -l`` lists them)."""

from __future__ import annotations

import os

import nox

nox.needs_version = ">=2024.3.2"
nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests", "lint", "typecheck"]

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHONS = nox.project.python_versions(PYPROJECT)
CURRENT = "3.11"


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the whole test suite (browser tests need Debian's chromium)."""
    session.install(".[testing]", *nox.project.dependency_groups(PYPROJECT, "tests"))
    session.run("pytest", *session.posargs, env={"PYTHONDEVMODE": "0"})


@nox.session(python=CURRENT)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole tree."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=CURRENT)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over src/ and the typing examples in tests/typing/."""
    session.install(".[testing]", *nox.project.dependency_groups(PYPROJECT, "typecheck"))
    session.run("mypy", "src/mailreset", "tests/typing")


@nox.session(python=CURRENT)
def bench(session: nox.Session) -> None:
    """Benchmarks against their anchors, measured in one run, printed as ratios."""
    session.install(".", *nox.project.dependency_groups(PYPROJECT, "bench"))
    session.run("python", "-m", "devtools.bench", *session.posargs)


@nox.session(python=CURRENT)
def sink(session: nox.Session) -> None:
    """The debug SMTP sink: SMTP on 127.0.0.1:8025, viewer on http://127.0.0.1:8026/.

    Options after ``--`` go to it: ``nox -s sink -- --store .mail --tempfail-first 2``;
    ``nox -s sink -- --help`` lists them.
    """
    session.install(".[testing]")
    session.run("python", "-m", "devtools.sink", *session.posargs)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}
