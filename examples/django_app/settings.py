"""The Django example's settings, in code (no project template, no migrations of its own).

Used as ``DJANGO_SETTINGS_MODULE=examples.django_app.settings``, or without that variable
through :func:`configure` (scripts, tests, the demo). ``EXAMPLE_*`` environment variables
override the defaults: ``EXAMPLE_SECRET_KEY``, ``EXAMPLE_MAILRESET_SECRET_KEY``,
``EXAMPLE_DATABASE``, ``EXAMPLE_EMAIL_PORT``, ...
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import django

HERE = Path(__file__).resolve().parent


def _env(name: str, default: str) -> str:
    return os.environ.get(f"EXAMPLE_{name}", default)


# A fresh random key per start when none is given: sessions and links end with the process.
SECRET_KEY = _env("SECRET_KEY", "") or secrets.token_hex(32)
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver"]
ROOT_URLCONF = "examples.django_app.urls"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [HERE / "templates"],
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": _env("DATABASE", "django_app.sqlite3"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
AUTH_PASSWORD_VALIDATORS: list[dict[str, Any]] = []  # mailreset's NIST policy checks them
LOGGING_CONFIG = None  # keep the process's logging as it is (pytest's, uvicorn's, ...)

# Mail: every Django mail (send_mail, mail_admins, PasswordResetView) through mailreset.
# Options as Django 6.1's MAILERS names them; before 6.1 they become the EMAIL_* settings.
mail_options: dict[str, Any] = {
    "host": _env("EMAIL_HOST", "127.0.0.1"),
    "port": int(_env("EMAIL_PORT", "8025")),  # the debug sink; 587 + use_tls for a real one
    "use_tls": _env("EMAIL_USE_TLS", "") == "1",
    "use_ssl": _env("EMAIL_USE_SSL", "") == "1",
    "username": _env("EMAIL_HOST_USER", ""),
    "password": _env("EMAIL_HOST_PASSWORD", ""),
    "timeout": 10,
}
email_names = {  # Django's settings before MAILERS (6.1) for each option
    "host": "EMAIL_HOST",
    "port": "EMAIL_PORT",
    "use_tls": "EMAIL_USE_TLS",
    "use_ssl": "EMAIL_USE_SSL",
    "username": "EMAIL_HOST_USER",
    "password": "EMAIL_HOST_PASSWORD",
    "timeout": "EMAIL_TIMEOUT",
    "ssl_certfile": "EMAIL_SSL_CERTFILE",
    "ssl_keyfile": "EMAIL_SSL_KEYFILE",
}


def mail_settings(**options: Any) -> dict[str, Any]:
    """The settings that send Django's mail through mailreset with ``options`` (over
    ``mail_options``): ``MAILERS`` on Django 6.1 and later, ``EMAIL_*`` before."""
    backend = "examples.django_app.mail_backend.EmailBackend"
    merged = {**mail_options, **options}
    if django.VERSION >= (6, 1):
        return {"MAILERS": {"default": {"BACKEND": backend, "OPTIONS": merged}}}
    return {"EMAIL_BACKEND": backend, **{email_names[name]: merged[name] for name in merged}}


globals().update(mail_settings())
DEFAULT_FROM_EMAIL = "Example app <noreply@app.example>"
SERVER_EMAIL = "Example app errors <errors@app.example>"
# Django 6.0 takes plain addresses and deprecates the (name, address) pairs before it.
ADMINS = ["ops@app.example"] if django.VERSION >= (6, 0) else [("Ops", "ops@app.example")]

# The reset flow (examples/django_app/adapter.py).
MAILRESET_SECRET_KEY = _env("MAILRESET_SECRET_KEY", "") or secrets.token_hex(32)
MAILRESET_URL = _env("MAILRESET_URL", "http://127.0.0.1:8000/reset/{token}")
MAILRESET_MAX_AGE = 600
MAILRESET_APP_NAME = "Example app"


def configure(**overrides: Any) -> None:
    """Configure Django from this module (plus ``overrides``) and set it up, once a process.

    Does nothing when Django is already configured: settings are per process in Django.
    """
    from django.conf import settings

    if not settings.configured:
        values = {name: value for name, value in globals().items() if name.isupper()}
        settings.configure(**{**values, **overrides})
    django.setup()


def create_tables() -> None:
    """Create the tables of Django's auth, contenttypes and sessions apps (their migrations)."""
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
