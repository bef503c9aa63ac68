"""mailreset for Django in one screen: copy this file (and ``mail_backend.py``) into your project.

``DjangoUserStore()`` is the :class:`~mailreset.reset.UserStore` over ``get_user_model()``;
``reset_flow()`` is the process's :class:`~mailreset.reset.PasswordReset`, made from the
settings on first use, mailing through the same pool as ``EMAIL_BACKEND`` (``mail_backend``),
and closed at exit (before that pool delivers what is left).

Settings: ``MAILRESET_SECRET_KEY`` (32+ bytes; not Django's ``SECRET_KEY``, so that rotating
one does not touch the other), ``MAILRESET_URL`` (``"https://app.example/reset/{token}"``:
never taken from the request), ``MAILRESET_MAX_AGE`` (seconds, 600),
``MAILRESET_APP_NAME``, ``DEFAULT_FROM_EMAIL`` and the ``EMAIL_*`` settings of the backend.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.exceptions import ValidationError
from django.core.signals import setting_changed
from django.db import close_old_connections, transaction
from django.dispatch import receiver

from examples.django_app import mail_backend
from mailreset import MessageBuilder, PasswordReset, TokenService, normalize_email

if TYPE_CHECKING:  # a model import needs the app registry: not at import time
    from django.contrib.auth.base_user import AbstractBaseUser

__all__ = ["DjangoUserStore", "reset_flow"]


@contextmanager
def _query() -> Iterator[None]:
    """Run queries, then let go of this thread's connection unless a transaction holds it.

    The flow calls the store from its own worker threads, where no request cycle ever closes
    Django's per-thread connection; left open, it would live as long as the worker.
    """
    try:
        yield
    finally:
        if transaction.get_autocommit():
            close_old_connections()


class DjangoUserStore:
    """The UserStore over ``get_user_model()``; the password hash is the token's state.

    It uses the model's ``objects`` manager (a custom user model keeps that name by
    convention, as ``UserManager`` does).

    Look-ups match the address as Django's own ``PasswordResetForm`` does: case-insensitively
    in SQL, then exactly on :func:`mailreset.normalize_email` in Python, and only when one
    active user matches. Mail goes to the address stored for that user.
    """

    def find_by_email(self, email: str) -> AbstractBaseUser | None:
        """The one active user whose normalised address is ``email``."""
        model = get_user_model()
        field = model.get_email_field_name()
        wanted = normalize_email(email)
        with _query():
            candidates = list(model.objects.filter(**{f"{field}__iexact": email}))
        found = [
            user
            for user in candidates
            if user.is_active and normalize_email(getattr(user, field) or "") == wanted
        ]
        return found[0] if len(found) == 1 else None

    def get(self, subject: str) -> AbstractBaseUser | None:
        """The active user with this primary key."""
        model = get_user_model()
        try:
            with _query():
                user = model.objects.get(pk=subject)  # a subject that is no key: ValueError
        except (ValidationError, ValueError, model.DoesNotExist):
            return None
        return user if user.is_active else None

    def subject(self, user: AbstractBaseUser) -> str:
        """The primary key, as a string, for tokens."""
        return str(user.pk)

    def email(self, user: AbstractBaseUser) -> str:
        """The stored address."""
        return str(getattr(user, user.get_email_field_name()))

    def state(self, user: AbstractBaseUser) -> str:
        """The password hash (salted): a new password kills every outstanding reset link."""
        return user.password

    def set_password(
        self, user: AbstractBaseUser, new_password: str, *, expected_state: str
    ) -> bool:
        """Compare-and-set in one UPDATE ... WHERE pk = ? AND password = ?; whether it did.

        Of two processes completing one link at once, exactly one changes the password.
        """
        model = type(user)
        new_hash = make_password(new_password)
        with _query():
            changed = model.objects.filter(pk=user.pk, password=expected_state).update(
                password=new_hash
            )
        if changed == 1:
            user.password = new_hash
        return changed == 1


_lock = threading.Lock()
_made: dict[str, PasswordReset[Any]] = {}  # "flow": the process's flow, once made


def reset_flow() -> PasswordReset[Any]:
    """The process's reset flow, made from the settings on first use."""
    with _lock:
        flow = _made.get("flow")
        if flow is None:
            flow = _made["flow"] = PasswordReset(
                TokenService(
                    settings.MAILRESET_SECRET_KEY,
                    max_age=getattr(settings, "MAILRESET_MAX_AGE", 600),
                ),
                MessageBuilder(sender=settings.DEFAULT_FROM_EMAIL),
                mail_backend.mailer(),  # the EMAIL_BACKEND's pool: made (and closed) first
                DjangoUserStore(),
                reset_url=settings.MAILRESET_URL,
                app_name=getattr(settings, "MAILRESET_APP_NAME", "Django app"),
            )
            # atexit runs last-registered first: the flow hands over its last messages
            # before the mailer (registered when it was made, above) drains.
            atexit.register(flow.close)
        return flow


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    """Tests change settings (override_settings): the next reset_flow() reads them anew."""
    if setting.startswith(("MAILRESET_", "EMAIL_")) or setting in {
        "MAILERS",
        "DEFAULT_FROM_EMAIL",
    }:
        with _lock:
            old = _made.pop("flow", None)
        if old is not None:
            atexit.unregister(old.close)
            old.close()
