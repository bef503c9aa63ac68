"""The installed distribution: metadata, the pytest plugin entry point, typing marker, wheel."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import mailreset

ROOT = Path(__file__).resolve().parent.parent


def test_version_comes_from_metadata() -> None:
    """The version is read from the distribution; there is no __version__ to drift."""
    version = importlib.metadata.version("mailreset")

    assert version.count(".") >= 2
    assert not hasattr(mailreset, "__version__")


def test_pytest_plugin_is_registered_through_pytest11() -> None:
    """The plugin ``mailreset`` is found by pytest through the pytest11 entry point."""
    entry_points = importlib.metadata.entry_points(group="pytest11")

    assert "mailreset.testing.plugin" == entry_points["mailreset"].value


def test_runtime_requirements_are_only_pyjwt_jinja2_attrs_and_idna() -> None:
    """Installing the core pulls in PyJWT, Jinja2, attrs and idna (IDNA 2008 domains), no more."""
    requires = importlib.metadata.requires("mailreset") or []
    core = sorted(
        requirement.split(">")[0].split("=")[0].split("<")[0].strip().lower()
        for requirement in requires
        if "extra ==" not in requirement
    )

    assert ["attrs", "idna", "jinja2", "pyjwt"] == core


def test_py_typed_is_installed() -> None:
    """The package ships the PEP 561 marker."""
    assert (Path(mailreset.__file__).parent / "py.typed").is_file()


@pytest.mark.slow
def test_wheel_holds_the_package_and_not_devtools(tmp_path: Path) -> None:
    """The wheel carries src/mailreset (templates included) and never devtools/ or tests/."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("mailreset-*.whl")
    names = zipfile.ZipFile(wheel).namelist()

    assert "mailreset/py.typed" in names
    assert "mailreset/testing/plugin.py" in names
    assert not [name for name in names if name.startswith(("devtools/", "tests/", "examples/"))]
