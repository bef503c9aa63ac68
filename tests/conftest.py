"""Fixtures shared by the whole suite; the mailreset plugin itself comes via its entry point."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from tests.rq_support import INSTALL_HINT, REDIS_SERVER, RedisServer

pytest_plugins = ["tests.browser_support"]

# No example database: a failure found once on one machine is not replayed from .hypothesis/
# forever, and every run (CI included) depends only on the code and the seed.
hypothesis_settings.register_profile("mailreset", database=None)
hypothesis_settings.load_profile("mailreset")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of its own for each test (AOF, appendfsync always), stopped after it."""
    if not Path(REDIS_SERVER).exists():
        from tests.browser_support import in_ci  # a plugin module: imported once registered

        if in_ci():
            pytest.fail(INSTALL_HINT, pytrace=False)
        pytest.skip(INSTALL_HINT)
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()
