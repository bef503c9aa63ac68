"""Sessions: tests, minimums, lint, typecheck, bench, sink, demo (``nox -l`` lists them)."""

from __future__ import annotations

import nox
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

nox.needs_version = ">=2024.3.2"
nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests", "lint", "typecheck"]

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHONS = nox.project.python_versions(PYPROJECT)
CURRENT = "3.11"


# The real-peer campaigns (Postfix outages, worker kills, multi-process servers) and the browser
# tests exercise our logic against other programs, not against the Python version: they run
# once, on CURRENT, and the other versions run everything else. That keeps `nox -s tests` on
# all four versions (what CI runs) within its time budget. Options after `--` replace this.
PORTABLE_ONLY = ("-m", "not slow and not browser and not postfix")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite: all of it on CURRENT, the portable part on the other versions.

    Browser tests need Debian's chromium; the campaigns need redis-server and postfix
    (`.ci/run` installs them). `nox -s tests-3.12 -- -m ""` runs everything on 3.12 too.
    """
    session.install(".[testing]", *nox.project.dependency_groups(PYPROJECT, "tests"))
    selection = session.posargs or (() if session.python == CURRENT else PORTABLE_ONLY)
    session.run("pytest", *selection, env={"PYTHONDEVMODE": "0"})


# Left out of `minimums`: Flask 3 requires Jinja2>=3.1.2, above our floor, so with Flask
# installed pip could not install the floors at all (the Flask example's tests skip without
# it); Playwright serves only the browser tests, which the portable selection leaves out.
_NOT_FOR_MINIMUMS = frozenset({"flask", "playwright"})


def _floor_pins(requirements: list[str]) -> list[str]:
    """``name[extras]==floor`` for each ``name>=floor``: the lowest versions pyproject declares.

    A name declared in several places (redis by the rq and the celery extras) gets the highest
    of its floors, the lowest version that every extra declaring it accepts.
    """
    floors: dict[str, Version] = {}
    extras: dict[str, set[str]] = {}
    for text in requirements:
        requirement = Requirement(text)
        declared = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        if len(declared) != 1:
            raise ValueError(f"{text!r}: every dependency must declare one '>=' floor")
        name = canonicalize_name(requirement.name)
        floors[name] = max(floors.get(name, Version(declared[0])), Version(declared[0]))
        extras.setdefault(name, set()).update(requirement.extras)
    return [
        f"{name}[{','.join(sorted(extras[name]))}]=={floor}"
        if extras[name]
        else f"{name}=={floor}"
        for name, floor in floors.items()
    ]


@nox.session(python=PYTHONS[0])
def minimums(session: nox.Session) -> None:
    """The portable tests against the lowest versions pyproject declares, on the oldest Python.

    Runtime dependencies and every extra (testing, rq, dkim) are pinned to their `>=` floors,
    so a floor that is too low fails here instead of in a user's install. Test-only tools come
    at their newest, except the two left out above.
    """
    project = PYPROJECT["project"]
    declared = [*project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        declared.extend(extra)
    pinned = {canonicalize_name(Requirement(text).name) for text in declared}
    tools = [
        text
        for text in nox.project.dependency_groups(PYPROJECT, "tests")
        if canonicalize_name(Requirement(text).name) not in pinned | _NOT_FOR_MINIMUMS
    ]
    session.install(".", *_floor_pins(declared), *tools)
    session.run("python", "-m", "pip", "list", "--format=freeze")
    session.run("pytest", *(session.posargs or PORTABLE_ONLY), env={"PYTHONDEVMODE": "0"})


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


# What each example needs beyond mailreset (werkzeug, Flask's server, serves the WSGI ones).
DEMO_NEEDS = {
    "flask": ["flask>=3.0"],
    "bottle": ["flask>=3.0", "bottle>=0.13"],
    "fastapi": ["fastapi>=0.110", "uvicorn>=0.29"],
    "django": ["flask>=3.0", "django>=4.2"],
}


@nox.session(python=CURRENT)
def demo(session: nox.Session) -> None:
    """An example app and the debug sink with a demo account; `-- --check` runs it unattended.

    Options after `--`: --app flask|bottle|fastapi|django (flask), --check, --smtp-port 8025,
    --http-port 8026, --app-port (5000 Flask, 8080 Bottle, 8000 FastAPI and Django).
    """
    app = "flask"
    for option, value in zip(session.posargs, [*session.posargs[1:], ""], strict=True):
        if option == "--app":
            app = value
        elif option.startswith("--app="):
            app = option.partition("=")[2]
    # An unknown app gets no packages here; examples.demo then names the choices.
    session.install(".[testing]", *DEMO_NEEDS.get(app, []))
    session.run("python", "-m", "examples.demo", *session.posargs)
