"""mailreset for Bottle in one screen: copy this file into your app.

``app.install(MailresetPlugin(users=...))`` reads the settings from ``app.config``, makes one
:class:`~mailreset.mailers.ThreadedMailer` for the process (closed by ``app.close()`` or at
exit) and passes the :class:`~mailreset.reset.PasswordReset` flow to every route that has a
``reset`` argument. ``plugin.flow`` is the flow itself.

Config keys: ``MAIL_SERVER``, ``MAIL_PORT``, ``MAIL_USE_TLS``, ``MAIL_USE_SSL``,
``MAIL_USERNAME``, ``MAIL_PASSWORD``, ``MAIL_TIMEOUT``, ``MAIL_DEFAULT_SENDER``,
``MAILRESET_SECRET_KEY`` (32+ bytes), ``MAILRESET_URL`` (``"https://app.example/reset/{token}"``:
never taken from the request), ``MAILRESET_MAX_AGE`` (seconds, default 600) and
``MAILRESET_APP_NAME``, and ``MAILRESET_LIMITER_STORAGE``: a ``limits`` storage URI
(``"redis://localhost:6379/0"``) that makes the rate limits hold across every process and
machine (``mailreset[limits]``); without it they live in each process's memory. A setting
left as None counts as unset.
"""

from __future__ import annotations

import atexit
import functools
import inspect
from collections.abc import Callable
from typing import Any

import bottle

from mailreset import PasswordReset, SharedRateLimiter, SMTPSettings, UserStore
from mailreset.mailers import ThreadedMailer
from mailreset.messages import MessageBuilder
from mailreset.tokens import TokenService


class MailresetPlugin:
    """A Bottle plugin (API 2) that owns the reset flow and its mailer."""

    name = "mailreset"
    api = 2

    def __init__(self, *, users: UserStore[Any], keyword: str = "reset", **options: Any) -> None:
        self.users, self.keyword, self.options = users, keyword, options
        self.flow: PasswordReset[Any] | None = None
        self.mailer: ThreadedMailer | None = None

    def setup(self, app: bottle.Bottle) -> None:
        """Build the flow from ``app.config`` when the plugin is installed."""
        config = app.config
        mail = {
            key: str(value)
            for key, value in config.items()
            if key.startswith("MAIL_") and value is not None  # None: unset, not "None"
        }
        self.mailer = ThreadedMailer(SMTPSettings.from_env(environ=mail))
        if config.get("MAILRESET_LIMITER_STORAGE"):
            storage = config["MAILRESET_LIMITER_STORAGE"]
            self.options.setdefault("limiter", SharedRateLimiter(storage))
        self.flow = PasswordReset(
            TokenService(
                config["MAILRESET_SECRET_KEY"], max_age=config.get("MAILRESET_MAX_AGE", 600)
            ),
            MessageBuilder(sender=config["MAIL_DEFAULT_SENDER"]),
            self.mailer,
            self.users,
            reset_url=config["MAILRESET_URL"],
            app_name=config.get("MAILRESET_APP_NAME", "Bottle app"),
            **self.options,
        )
        atexit.register(self.close)

    def apply(self, callback: Callable[..., Any], route: bottle.Route) -> Callable[..., Any]:
        """Pass the flow to routes that take a ``reset`` argument."""
        # inspect, not route.get_callback_args(): that one guesses wrong for closures.
        if self.keyword not in inspect.signature(route.callback).parameters:
            return callback

        @functools.wraps(callback)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs[self.keyword] = self.flow
            return callback(*args, **kwargs)

        return wrapper

    def close(self) -> None:
        """Finish pending requests, then drain and close the mailer (idempotent)."""
        atexit.unregister(self.close)
        if self.flow is not None:
            self.flow.close()  # first: its workers hand messages to the mailer
        if self.mailer is not None:
            self.mailer.close()
        self.flow = self.mailer = None
