"""mailreset for Flask in one screen: copy this file into your app.

``init_app(app, users=...)`` reads the settings from ``app.config``, makes one
:class:`~mailreset.mailers.ThreadedMailer` for the process (closed at exit) and keeps the
:class:`~mailreset.reset.PasswordReset` flow in ``app.extensions["mailreset"]``.

Config keys: ``MAIL_SERVER``, ``MAIL_PORT``, ``MAIL_USE_TLS``, ``MAIL_USE_SSL``,
``MAIL_USERNAME``, ``MAIL_PASSWORD``, ``MAIL_TIMEOUT`` (as Flask-Mail), ``MAIL_DEFAULT_SENDER``,
``MAILRESET_SECRET_KEY`` (32+ bytes; ``python -c "import secrets; print(secrets.token_hex(32))"``),
``MAILRESET_URL`` (``"https://app.example/reset/{token}"``: never taken from the request),
``MAILRESET_MAX_AGE`` (seconds, default 600), ``MAILRESET_APP_NAME`` and
``MAILRESET_LIMITER_STORAGE``: a ``limits`` storage URI (``"redis://localhost:6379/0"``) that
makes the rate limits hold across every process and machine (``mailreset[limits]``). Without
it the limits live in each process's memory: fine for one process, 4x too lax with 4 workers.
A setting left as None (``MAIL_USERNAME=os.environ.get(...)``) counts as unset.
"""

from __future__ import annotations

import atexit
from typing import Any

from flask import Flask, current_app

from mailreset import PasswordReset, SharedRateLimiter, SMTPSettings, UserStore
from mailreset.mailers import ThreadedMailer
from mailreset.messages import MessageBuilder
from mailreset.tokens import TokenService


def init_app(app: Flask, *, users: UserStore[Any], **options: Any) -> PasswordReset[Any]:
    """Make the reset flow for ``app``; ``options`` go to :class:`PasswordReset`."""
    config = app.config
    mail = {
        key: str(value)
        for key, value in config.items()
        if key.startswith("MAIL_") and value is not None  # None: unset, not the text "None"
    }
    mailer = ThreadedMailer(SMTPSettings.from_env(environ=mail))
    if config.get("MAILRESET_LIMITER_STORAGE"):
        options.setdefault("limiter", SharedRateLimiter(config["MAILRESET_LIMITER_STORAGE"]))
    flow: PasswordReset[Any] = PasswordReset(
        TokenService(config["MAILRESET_SECRET_KEY"], max_age=config.get("MAILRESET_MAX_AGE", 600)),
        MessageBuilder(sender=config["MAIL_DEFAULT_SENDER"]),
        mailer,
        users,
        reset_url=config["MAILRESET_URL"],
        app_name=config.get("MAILRESET_APP_NAME", app.name),
        **options,
    )
    app.extensions["mailreset"] = flow

    def close() -> None:
        atexit.unregister(close)
        flow.close()  # finish the look-ups first: they hand messages to the mailer
        mailer.close()

    app.extensions["mailreset.close"] = close
    atexit.register(close)
    return flow


def reset_flow() -> PasswordReset[Any]:
    """The current app's flow (inside a request or app context)."""
    flow: PasswordReset[Any] = current_app.extensions["mailreset"]
    return flow
