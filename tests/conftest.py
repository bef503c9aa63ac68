"""Fixtures shared by the whole suite; the mailreset plugin itself comes via its entry point."""

from __future__ import annotations

pytest_plugins = ["tests.browser_support", "tests.rq_support"]
