"""mailreset for FastAPI in one screen: copy this file into your app.

``lifespan = mailreset_lifespan(settings, users=...)`` makes one
:class:`~mailreset.mailers.ThreadedMailer` and the :class:`~mailreset.reset.PasswordReset`
flow when the app starts, keeps them in ``app.state.mailreset`` (a :class:`Mailreset`), and
closes both (delivering what was queued) when it stops. Routes take the flow with
``reset: PasswordReset[Any] = Depends(reset_flow)``. The flow's calls never wait for SMTP;
a route that needs a delivery's outcome awaits ``asyncio.wrap_future(mailer.send(...))``,
which does not block the event loop.

Settings (a mapping, e.g. ``os.environ``): ``MAIL_SERVER``, ``MAIL_PORT``, ``MAIL_USE_TLS``,
``MAIL_USE_SSL``, ``MAIL_USERNAME``, ``MAIL_PASSWORD``, ``MAIL_TIMEOUT``,
``MAIL_DEFAULT_SENDER``, ``MAILRESET_SECRET_KEY`` (32+ bytes), ``MAILRESET_URL``
(``"https://app.example/reset/{token}"``: never taken from the request),
``MAILRESET_MAX_AGE`` (seconds, default 600) and ``MAILRESET_APP_NAME``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request

from mailreset import PasswordReset, SMTPSettings, UserStore
from mailreset.mailers import ThreadedMailer
from mailreset.messages import MessageBuilder
from mailreset.tokens import TokenService


@dataclass
class Mailreset:
    """What the lifespan keeps in ``app.state.mailreset``."""

    flow: PasswordReset[Any]
    mailer: ThreadedMailer
    builder: MessageBuilder


def mailreset_lifespan(
    settings: Mapping[str, Any], *, users: UserStore[Any], **options: Any
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A lifespan that owns the flow and its mailer; ``options`` go to PasswordReset."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        mail = {key: str(value) for key, value in settings.items() if key.startswith("MAIL_")}
        mailer = ThreadedMailer(SMTPSettings.from_env(environ=mail))
        builder = MessageBuilder(sender=settings["MAIL_DEFAULT_SENDER"])
        flow: PasswordReset[Any] = PasswordReset(
            TokenService(
                settings["MAILRESET_SECRET_KEY"],
                max_age=int(settings.get("MAILRESET_MAX_AGE", 600)),
            ),
            builder,
            mailer,
            users,
            reset_url=settings["MAILRESET_URL"],
            app_name=settings.get("MAILRESET_APP_NAME", "FastAPI app"),
            **options,
        )
        app.state.mailreset = Mailreset(flow, mailer, builder)
        try:
            yield
        finally:
            # Blocking, but the server is stopping: no request is left to starve.
            flow.close()  # first: its workers hand messages to the mailer
            mailer.close()

    return lifespan


def reset_flow(request: Request) -> PasswordReset[Any]:
    """A dependency: the app's reset flow."""
    state: Mailreset = request.app.state.mailreset
    return state.flow
