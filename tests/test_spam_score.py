"""The bundled mails as SpamAssassin scores them: at most 0, in English and in Chinese.

SpamAssassin (Debian's ``spamassassin``, its stock rules) runs offline (``-L``: no DNS
blocklists, no network), without Bayes and without any user state: HOME is a fresh folder
and no preferences file is made or read. One process scores every message (``--mbox``).
"""

from __future__ import annotations

import mailbox
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mailreset import Envelope, MessageBuilder
from tests.browser_support import in_ci

SPAMASSASSIN = shutil.which("spamassassin") or "/usr/bin/spamassassin"
INSTALL_HINT = (
    "spamassassin is not installed: `sudo apt-get install spamassassin` (Debian/Ubuntu); "
    ".ci/run installs it on a fresh machine"
)
URL = "https://app.example/reset/eyJhbGciOiJIUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl"
BUNDLED = ["reset_password", "password_changed", "reset_password_unknown"]
APP_NAMES = {None: "Acme", "zh_Hans": "示例应用"}
_STATUS = re.compile(r"score=(?P<score>-?[\d.]+).*?tests=(?P<tests>\S*)", re.S)


def context(name: str, app_name: str) -> dict[str, Any]:
    return {
        "reset_password": {
            "url": URL,
            "expires_minutes": 10,
            "app_name": app_name,
            "user_name": "Bob",
        },
        "password_changed": {
            "app_name": app_name,
            "user_name": "Bob",
            "support_url": "https://app.example/help",
        },
        "reset_password_unknown": {
            "app_name": app_name,
            "signup_url": "https://app.example/signup",
        },
    }[name]


def wire(name: str, locale: str | None) -> bytes:
    """The bundled mail ``name`` as it goes on the wire."""
    builder = MessageBuilder(sender=f"{APP_NAMES[locale]} <no-reply@app.example>", locale=locale)
    message = builder.build(
        name, to="Bob Smith <bob@mail.example>", context=context(name, APP_NAMES[locale])
    )
    return Envelope.from_message(message).data


def score(messages: list[bytes], tmp_path: Path) -> list[tuple[float, str]]:
    """``(score, rules hit)`` for each message, in order, from one offline SpamAssassin run."""
    if not Path(SPAMASSASSIN).exists():
        if in_ci():
            pytest.fail(INSTALL_HINT, pytrace=False)
        pytest.skip(INSTALL_HINT)
    given = tmp_path / "given.mbox"
    box = mailbox.mbox(given)
    for data in messages:
        box.add(data.replace(b"\r\n", b"\n"))
    box.close()
    home = tmp_path / "home"
    home.mkdir()
    with given.open("rb") as source:
        result = subprocess.run(
            [SPAMASSASSIN, "-L", "-x", "--cf=use_bayes 0", "--mbox"],
            stdin=source,
            capture_output=True,
            env={"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            timeout=120,
            check=True,
        )
    (tmp_path / "scored.mbox").write_bytes(result.stdout)
    scored = []
    out = mailbox.mbox(tmp_path / "scored.mbox")
    try:
        for message in out:
            # Folded lines break the rule list after its commas: join them up again.
            status = re.sub(r",\s+", ",", " ".join(str(message["X-Spam-Status"]).split()))
            match = _STATUS.search(status)
            assert match is not None, message["X-Spam-Status"]
            scored.append((float(match["score"]), match["tests"]))
    finally:
        out.close()
    assert len(messages) == len(scored), result.stderr.decode("utf-8", "replace")
    return scored


def test_every_bundled_mail_scores_at_most_zero_in_both_languages(tmp_path: Path) -> None:
    """No rule of SpamAssassin's offline set scores against a bundled mail, English or
    Chinese: no invisible or low-contrast text (the preheader is plain visible text)."""
    cases = [(name, locale) for locale in APP_NAMES for name in BUNDLED]

    scores = score([wire(name, locale) for name, locale in cases], tmp_path)

    assert [] == [
        (name, locale, points, rules)
        for (name, locale), (points, rules) in zip(cases, scores, strict=True)
        if points > 0
    ]


def test_the_score_check_can_fail(tmp_path: Path) -> None:
    """The same run scores a mail with a 1 px preheader in the background's colour above 0
    (the form the bundled templates used to have): the check sees what it is meant to."""
    hidden = (
        '<div style="display:none;font-size:1px;line-height:1px;color:#f3f4f6;">'
        "Your link to choose a new password.</div>"
    )
    data = wire("reset_password", None)
    body_start = data.index(b"<body")
    body_open_end = data.index(b">", body_start) + 1
    html_part = data[:body_open_end] + hidden.encode() + data[body_open_end:]

    [(points, rules)] = score([html_part], tmp_path)

    assert points > 0, rules
