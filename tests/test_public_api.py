"""The public surface: __all__ is sorted, complete, and every name has a docstring."""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

import pytest

import mailreset

PUBLIC_MODULES = [
    "mailreset",
    "mailreset.dkim",
    "mailreset.errors",
    "mailreset.mailers",
    "mailreset.messages",
    "mailreset.reset",
    "mailreset.spool",
    "mailreset.rq",
    "mailreset.testing",
    "mailreset.tokens",
    "mailreset.transports",
]


def _module(name: str) -> ModuleType:
    return importlib.import_module(name)


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_and_unique(name: str) -> None:
    """Every public module lists its names once, sorted."""
    exported = list(_module(name).__all__)

    assert sorted(set(exported)) == exported


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_exported_name_exists_and_has_a_docstring(name: str) -> None:
    """Each name in __all__ resolves and carries its own docstring."""
    module = _module(name)
    undocumented = [
        exported
        for exported in module.__all__
        if not inspect.getdoc(getattr(module, exported))
        or inspect.getdoc(getattr(module, exported)) == inspect.getdoc(object)
    ]

    assert [] == undocumented


def test_package_reexports_every_public_class_of_the_core_modules() -> None:
    """mailreset.__all__ is the union of the core modules' public names."""
    core = ["errors", "mailers", "spool", "transports", "tokens", "messages", "reset"]
    expected: set[str] = set()
    for short in core:
        try:
            expected |= set(_module(f"mailreset.{short}").__all__)
        except ModuleNotFoundError:
            continue

    assert sorted(expected) == sorted(mailreset.__all__)


def test_every_error_is_a_mailreset_error() -> None:
    """One exception tree: everything in mailreset.errors derives from MailresetError."""
    errors = _module("mailreset.errors")
    classes = [getattr(errors, name) for name in errors.__all__]

    assert all(issubclass(cls, mailreset.MailresetError) for cls in classes)
