"""The app's users table in SQLite (stdlib ``sqlite3``), the UserStore over it, and sign-up.

Passwords are hashed with salted scrypt from ``hashlib`` at OWASP's cost (N=2^17, r=8, p=1:
128 MiB and a fraction of a second per hash); the parameters are stored with each hash, so
raising the cost later does not lock anyone out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

from mailreset import normalize_email

#: OWASP's scrypt cost (Password Storage Cheat Sheet): N=2^17, r=8, p=1.
COST = 2**17

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL,              -- as typed at sign-up: where mail goes
    email_key TEXT NOT NULL UNIQUE,   -- normalize_email(email): what look-ups compare
    password_hash TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1
)
"""


@dataclass(frozen=True)
class User:
    """One row of the users table."""

    id: int
    email: str
    password_hash: str
    active: bool


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # scrypt needs 128 * r * n bytes (128 MiB at N=2^17); hashlib refuses more than 32 MiB
    # unless maxmem allows it, so allow that much and a little more.
    maxmem = 128 * r * (n + p + 2)
    data = password.encode("utf-8", "surrogatepass")
    return hashlib.scrypt(data, salt=salt, n=n, r=r, p=p, dklen=32, maxmem=maxmem)


def hash_password(password: str, *, cost: int = COST) -> str:
    """A salted scrypt hash: ``scrypt$n$r$p$salt$digest``."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, cost, 8, 1)
    return f"scrypt${cost}$8$1${salt.hex()}${digest.hex()}"


def check_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``, in constant time."""
    _, n, r, p, salt, digest = password_hash.split("$")
    candidate = _scrypt(password, bytes.fromhex(salt), int(n), int(r), int(p))
    return hmac.compare_digest(candidate.hex(), digest)


class SQLiteUsers:
    """The users table; also a :class:`mailreset.UserStore` for the reset flow.

    Opens a connection per call, so it is safe from request threads and from the reset
    flow's background workers alike.
    """

    def __init__(self, path: str, *, password_cost: int = COST) -> None:
        self.path = path
        self.password_cost = password_cost
        # A hash to check against when the address is unknown, so a failed log-in takes as
        # long for a stranger as for a member (no enumeration through timing).
        self._dummy_hash = hash_password(secrets.token_hex(), cost=password_cost)
        with self._db() as db:
            db.execute(SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=10)) as db, db:
            yield db

    def _one(self, where: str, value: object) -> User | None:
        query = "SELECT id, email, password_hash, active FROM users WHERE " + where
        with self._db() as db:
            row = db.execute(query, (value,)).fetchone()
        return None if row is None else User(row[0], row[1], row[2], bool(row[3]))

    def create(self, email: str, password: str) -> User | None:
        """Add a user; None when the address is taken."""
        try:
            with self._db() as db:
                db.execute(
                    "INSERT INTO users (email, email_key, password_hash) VALUES (?, ?, ?)",
                    (email.strip(), normalize_email(email), self._hash(password)),
                )
        except sqlite3.IntegrityError:
            return None
        return self.find_by_email(normalize_email(email))

    def authenticate(self, email: str, password: str) -> User | None:
        """The active user with this address and password, else None (same time either way)."""
        user = self.find_by_email(normalize_email(email))
        matches = check_password(user.password_hash if user else self._dummy_hash, password)
        return user if user is not None and matches else None

    def _hash(self, password: str) -> str:
        return hash_password(password, cost=self.password_cost)

    # -- mailreset.UserStore -------------------------------------------------------------------

    def find_by_email(self, email: str) -> User | None:
        """The active user whose normalised address is ``email``."""
        user = self._one("email_key = ?", email)
        return user if user is not None and user.active else None

    def get(self, subject: str) -> User | None:
        """The active user with this id."""
        if not subject.isdigit():
            return None
        user = self._one("id = ?", int(subject))
        return user if user is not None and user.active else None

    def subject(self, user: User) -> str:
        """The id, as a string, for tokens."""
        return str(user.id)

    def email(self, user: User) -> str:
        """The stored address."""
        return user.email

    def state(self, user: User) -> str:
        """The password hash: a new password (with its new salt) kills every reset token."""
        return user.password_hash

    def set_password(self, user: User, new_password: str, *, expected_state: str) -> bool:
        """Store a new hash if the stored one is still ``expected_state``; whether it did.

        One statement compares and sets, so of two processes completing one reset link at
        once exactly one changes the password (the other gets False: the flow's StaleToken).
        """
        new_hash = self._hash(new_password)
        with self._db() as db:
            cursor = db.execute(
                "UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?",
                (new_hash, user.id, expected_state),
            )
        return cursor.rowcount == 1


#: What sign-up answers, for a new and a taken address alike: the page must not tell who has
#: an account. The mail tells the address's owner which case it was.
SIGN_UP_ANSWER = (
    "Thanks. We have sent a message to that address: if the account is new, log in; "
    "if the address already had one, the mail says what to do."
)


def sign_up(
    users: SQLiteUsers, email: str, password: str, settings: Mapping[str, Any]
) -> EmailMessage:
    """Create the account unless the address is taken; either way, the mail for the address.

    A new address gets a welcome; a taken one gets "someone tried to sign up with your
    address", sent to the address stored for it. The caller answers :data:`SIGN_UP_ANSWER`
    in both cases and sends the mail through its queueing mailer, so neither the page nor its
    timing tells whether the address has an account (the password is hashed in both cases).
    ``settings``: the app's ``MAIL_DEFAULT_SENDER``, ``MAILRESET_APP_NAME`` and
    ``MAILRESET_URL`` (the site's links come from it, never from a request's Host).

    Raises :class:`mailreset.InvalidMessage` when ``email`` is no address mail can go to.
    """
    sender, app_name = settings["MAIL_DEFAULT_SENDER"], settings["MAILRESET_APP_NAME"]
    parts = urlsplit(settings["MAILRESET_URL"])
    site = f"{parts.scheme}://{parts.netloc}"
    created = users.create(email, password)
    message = EmailMessage()
    message["From"] = sender
    if created is not None:
        message["To"] = created.email
        message["Subject"] = f"Welcome to {app_name}"
        message.set_content(
            f"Your {app_name} account is ready: log in at {site}/login\n\n"
            "If you did not sign up, ignore this mail.\n"
        )
        return message
    existing = users.find_by_email(normalize_email(email))
    message["To"] = existing.email if existing is not None else email.strip()
    message["Subject"] = f"Someone tried to sign up to {app_name} with your address"
    message.set_content(
        f"Someone tried to create a {app_name} account with this address, which already has "
        f"one. If it was you, log in at {site}/login or reset your password at "
        f"{site}/forgot\n\nIf it was not you, ignore this mail: nothing has changed.\n"
    )
    return message
