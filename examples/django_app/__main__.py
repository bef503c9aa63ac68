"""``python -m examples.django_app``: run the Django example on http://127.0.0.1:8000.

Settings come from ``examples/django_app/settings.py`` (``EXAMPLE_*`` environment variables
override them); the tables are made in ``EXAMPLE_DATABASE`` (``django_app.sqlite3``).
"""

from __future__ import annotations

from examples.django_app.settings import configure, create_tables

if __name__ == "__main__":
    configure()
    create_tables()
    from django.core.management import call_command

    # At exit the reset flow, then the mailer, deliver what they hold (see adapter.py).
    call_command("runserver", "127.0.0.1:8000", use_reloader=False)
