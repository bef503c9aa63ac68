"""The pytest plugin ``mailreset``: fixtures for asserting on sent mail.

Registered through the ``pytest11`` entry point; it only adds fixtures, none autouse.

.. versionadded:: 0.1
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from mailreset.testing._outbox import Outbox

if TYPE_CHECKING:
    from mailreset.testing._smtp import SMTPSink

__all__ = ["mail_outbox", "smtp_sink"]


@pytest.fixture
def mail_outbox() -> Iterator[Outbox]:
    """An in-memory mailer that records a copy of every message sent through it.

    Pass it wherever the code under test takes a :class:`~mailreset.mailers.Mailer`. It checks
    messages as a transport would, and offers ``.messages``, ``len()``, iteration, ``.last``,
    ``.find(to=..., subject=...)``, ``.clear()``, ``.wait_for(count, timeout)`` (for mail sent
    from other threads) and ``.assert_sent(...)``, whose failure lists what was sent.
    A fresh one for every test; it needs no aiosmtpd.
    """
    outbox = Outbox()
    yield outbox
    outbox.close()


@pytest.fixture(scope="session")
def _mailreset_smtp_server() -> Iterator[SMTPSink]:
    try:
        from mailreset.testing._smtp import SMTPSink
    except ImportError as error:  # pragma: no cover - depends on the environment
        pytest.fail(
            f"smtp_sink needs aiosmtpd: pip install 'mailreset[testing]' ({error})",
            pytrace=False,
        )
    with SMTPSink() as server:
        yield server


@pytest.fixture
def smtp_sink(_mailreset_smtp_server: SMTPSink) -> Iterator[SMTPSink]:
    """A real SMTP server on 127.0.0.1 that captures every message, emptied for each test.

    ``.host``, ``.port``, ``.settings`` (SMTPSettings for it), ``.messages``,
    ``.wait_for(count, timeout)``, ``.clear()``, and ``.faulty(...)`` to inject faults for a
    block. The server starts once per test session.
    """
    _mailreset_smtp_server.clear()
    yield _mailreset_smtp_server
    _mailreset_smtp_server.clear()
