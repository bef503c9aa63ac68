"""What the example-app tests share: the app settings for a test run and the passwords."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mailreset.testing import SMTPSink

PASSWORD = "first password 1"
NEW_PASSWORD = "second password 2"


def example_config(tmp_path: Path, smtp_sink: SMTPSink, reset_url: str) -> dict[str, Any]:
    """Settings for either example app: a fresh database, the capture server, cheap hashes."""
    return {
        "DATABASE": str(tmp_path / "users.db"),
        "SECRET_KEY": "test-secret-key-" + "0" * 32,
        "MAILRESET_SECRET_KEY": "test-token-key-" + "1" * 32,
        "MAIL_SERVER": smtp_sink.host,
        "MAIL_PORT": smtp_sink.port,
        "MAILRESET_URL": reset_url,
        "PASSWORD_COST": 2**12,  # scrypt's cost: low, so the suite stays fast
    }
