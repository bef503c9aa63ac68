"""The app's users table in SQLite (stdlib ``sqlite3``), and the UserStore over it.

Passwords are hashed with salted scrypt from ``hashlib``; the parameters are stored with each
hash, so raising the cost later does not lock anyone out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass

from mailreset import normalize_email

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


def hash_password(password: str, *, cost: int = 2**14) -> str:
    """A salted scrypt hash: ``scrypt$n$r$p$salt$digest``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=cost, r=8, p=1, dklen=32)
    return f"scrypt${cost}$8$1${salt.hex()}${digest.hex()}"


def check_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``, in constant time."""
    _, n, r, p, salt, digest = password_hash.split("$")
    candidate = hashlib.scrypt(
        password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
    )
    return hmac.compare_digest(candidate.hex(), digest)


class SQLiteUsers:
    """The users table; also a :class:`mailreset.UserStore` for the reset flow.

    Opens a connection per call, so it is safe from request threads and from the reset
    flow's background workers alike.
    """

    def __init__(self, path: str, *, password_cost: int = 2**14) -> None:
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
