"""MessageBuilder against the hand-written way (Jinja2 + EmailMessage) and against Django.

All build the bundled ``reset_password`` mail (text and HTML, From/To/Subject/Date/Message-ID)
from the same template files and serialise it. The first anchor is what an app writes by hand:
one Jinja2 environment made once, ``render()``, ``EmailMessage(policy=default)``,
``set_content`` and ``add_alternative``. Target (DESIGN.md): at least 0.8x. The second is
Django's ``EmailMultiAlternatives(...).message().as_bytes()`` on the same rendered text and
HTML (Django's legacy ``email.mime`` classes with the compat32 policy); the stretch target is
to match it.
"""

from __future__ import annotations

import email
import email.policy
import importlib
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import jinja2

from devtools.bench.harness import (
    Comparison,
    Options,
    configure_django,
    interleaved_medians,
    rate,
)
from mailreset import MessageBuilder

SENDER = "Acme <no-reply@acme.example>"
CONTEXT = {
    "url": "https://acme.example/reset/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl",
    "expires_minutes": 10,
    "app_name": "Acme",
    "user_name": "Bob",
}


def _anchor() -> tuple[jinja2.Template, jinja2.Template]:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("mailreset", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    environment.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
    return (
        environment.get_template("reset_password.txt"),
        environment.get_template("reset_password.html"),
    )


def build_by_hand(text: jinja2.Template, html: jinja2.Template, to: str) -> bytes:
    """The anchor: what an app writes without mailreset."""
    message = EmailMessage(policy=email.policy.default)
    message["From"] = SENDER
    message["To"] = to
    message["Subject"] = f"Reset your {CONTEXT['app_name']} password"
    message["Date"] = datetime.now(timezone.utc)
    message["Message-ID"] = make_msgid(domain="acme.example")
    message.set_content(text.render(CONTEXT))
    message.add_alternative(html.render(CONTEXT), subtype="html")
    return message.as_bytes()


def _django_message_class() -> type[Any]:
    """``EmailMultiAlternatives``, with Django configured just enough to build mail."""
    # Imported by name: Django ships no type hints, and only this benchmark needs it.
    configure_django()
    message_class: type[Any] = importlib.import_module("django.core.mail").EmailMultiAlternatives
    return message_class


def build_with_django(
    cls: type[Any], text: jinja2.Template, html: jinja2.Template, to: str
) -> bytes:
    """The Django anchor: the same rendering, then Django's message build.

    The Message-ID is made as ours is (the sender's domain): Django's default looks up the
    machine's host name once, which on a host without DNS takes seconds.
    """
    message = cls(
        f"Reset your {CONTEXT['app_name']} password",
        text.render(CONTEXT),
        SENDER,
        [to],
        headers={"Message-ID": make_msgid(domain="acme.example")},
    )
    message.attach_alternative(html.render(CONTEXT), "text/html")
    data: bytes = message.message().as_bytes()
    return data


def run(options: Options) -> list[Comparison]:
    """Messages built and serialised per second, ours against the hand-written anchor."""
    count = 150 if options.quick else 1500
    builder = MessageBuilder(sender=SENDER)
    text, html = _anchor()
    addresses = [f"Reader {n} <reader{n}@example.com>" for n in range(count)]

    def ours() -> float:
        pending = iter(addresses)
        return rate(
            lambda: builder.build("reset_password", to=next(pending), context=CONTEXT).as_bytes(),
            count,
        )

    def anchor() -> float:
        pending = iter(addresses)
        return rate(lambda: build_by_hand(text, html, next(pending)), count)

    django_message = _django_message_class()

    def django() -> float:
        pending = iter(addresses)
        return rate(lambda: build_with_django(django_message, text, html, next(pending)), count)

    ours(), anchor(), django()  # warm up: compile templates, fill caches
    medians = interleaved_medians(
        {"ours": ours, "anchor": anchor, "django": django}, options.rounds
    )
    return [
        Comparison(
            name="MessageBuilder.build + as_bytes",
            ours=medians["ours"],
            anchor=medians["anchor"],
            anchor_name="Jinja2 + EmailMessage + as_bytes by hand",
            unit="msg/s",
            target=0.8,
        ),
        Comparison(
            name="MessageBuilder.build + as_bytes (stretch)",
            ours=medians["ours"],
            anchor=medians["django"],
            anchor_name="Django EmailMultiAlternatives.message().as_bytes()",
            unit="msg/s",
            target=1.0,
        ),
    ]
