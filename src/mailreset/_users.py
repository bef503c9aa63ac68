"""Users as the flow sees them: the UserStore protocol, its in-memory twin, address keys.

Public through :mod:`mailreset.reset`.
"""

from __future__ import annotations

import secrets
import threading
import unicodedata
from collections.abc import Iterator
from hashlib import scrypt
from typing import Protocol, TypeVar, runtime_checkable

import attrs

U = TypeVar("U")


def normalize_email(address: str) -> str:
    """The form addresses are compared in: stripped, Unicode NFC, case-folded.

    Use it for the look-up key of a user store (store it beside the address as typed at
    sign-up, and look users up by it). Mail always goes to the stored address, never to
    this form.
    """
    return unicodedata.normalize("NFC", address.strip()).casefold()


@runtime_checkable
class UserStore(Protocol[U]):
    """**Protocol:** the app's users, as the reset flow needs them.

    A user is whatever object the app likes; the flow only passes it back to the store.
    Inactive or disabled users must not be returned by :meth:`find_by_email` or :meth:`get`.

    .. versionadded:: 0.1
    """

    def find_by_email(self, email: str) -> U | None:
        """The active user whose normalised address (see :func:`normalize_email`) is ``email``."""
        ...

    def get(self, subject: str) -> U | None:
        """The active user whose :meth:`subject` is ``subject``, else None."""
        ...

    def subject(self, user: U) -> str:
        """The user's stable id, as a string (it goes into tokens)."""
        ...

    def email(self, user: U) -> str:
        """The address stored for the user: where reset mail goes."""
        ...

    def state(self, user: U) -> str:
        """State that changes when the password does (the password hash, say); tokens bind it."""
        ...

    def set_password(self, user: U, new_password: str, *, expected_state: str) -> bool:
        """Compare-and-set: store ``new_password`` only if the state is still ``expected_state``.

        Hash ``new_password`` and store it only while :meth:`state` of the stored user still
        equals ``expected_state``, in one atomic step (in SQL, one statement:
        ``UPDATE users SET hash=? WHERE id=? AND hash=?``), and return whether it did. The new
        password must change :meth:`state`. This is what makes a reset link single-use across
        processes and machines: of two completions with one token, only one finds the state it
        verified still there.

        .. versionchanged:: 0.1
           Takes ``expected_state`` and returns whether the password changed.
        """
        ...


@attrs.frozen(kw_only=True)
class MemoryUser:
    """A user of :class:`MemoryUserStore`.

    Attributes:
        subject: the user's id.
        email: the address as given at sign-up (where mail goes).
        password_hash: the salted scrypt hash, ``salt$hash`` in hex.
        active: inactive users are invisible to the flow.

    .. versionadded:: 0.1
    """

    subject: str
    email: str
    password_hash: str = attrs.field(repr=False)
    active: bool = True


def _hash_password(password: str, salt: bytes | None = None) -> str:
    salt = secrets.token_bytes(16) if salt is None else salt
    # Cheap scrypt parameters: this store is a test and documentation twin, not production.
    digest = scrypt(password.encode("utf-8"), salt=salt, n=2**4, r=8, p=1, dklen=32)
    return f"{salt.hex()}${digest.hex()}"


class MemoryUserStore:
    """A :class:`UserStore` in memory, thread-safe: for tests, examples and docs.

    Passwords are stored salted and hashed. Users are :class:`MemoryUser` values, replaced
    (not mutated) when their password changes.

    .. versionadded:: 0.1
    """

    def __init__(self) -> None:
        self._users: dict[str, MemoryUser] = {}
        self._lock = threading.Lock()
        self._next_id = 1

    def add(self, email: str, password: str, *, active: bool = True) -> MemoryUser:
        """Create a user with a fresh id; an address already taken raises ValueError."""
        key = normalize_email(email)
        with self._lock:
            if any(normalize_email(user.email) == key for user in self._users.values()):
                raise ValueError(f"an account for {email!r} exists already")
            user = MemoryUser(
                subject=str(self._next_id),
                email=email.strip(),
                password_hash=_hash_password(password),
                active=active,
            )
            self._next_id += 1
            self._users[user.subject] = user
        return user

    def deactivate(self, user: MemoryUser) -> None:
        """Make ``user`` inactive: the flow no longer sees it."""
        with self._lock:
            self._users[user.subject] = attrs.evolve(self._users[user.subject], active=False)

    def check_password(self, user: MemoryUser, password: str) -> bool:
        """Whether ``password`` is the user's current password."""
        current = self._users.get(user.subject)
        if current is None:
            return False
        salt, _, _ = current.password_hash.partition("$")
        expected = _hash_password(password, bytes.fromhex(salt))
        return secrets.compare_digest(expected, current.password_hash)

    def find_by_email(self, email: str) -> MemoryUser | None:
        """The active user whose normalised address is ``email``."""
        with self._lock:
            users = list(self._users.values())
        return next(
            (user for user in users if user.active and normalize_email(user.email) == email),
            None,
        )

    def get(self, subject: str) -> MemoryUser | None:
        """The active user with this id, else None."""
        user = self._users.get(subject)
        return user if user is not None and user.active else None

    def subject(self, user: MemoryUser) -> str:
        """The user's id."""
        return user.subject

    def email(self, user: MemoryUser) -> str:
        """The address stored for the user."""
        return user.email

    def state(self, user: MemoryUser) -> str:
        """The current password hash (with its fresh salt, it changes on every reset)."""
        return user.password_hash

    def set_password(self, user: MemoryUser, new_password: str, *, expected_state: str) -> bool:
        """Store a new salted hash of ``new_password`` if the hash is still ``expected_state``.

        Returns whether it did (False: the password changed since, or the user is gone).
        """
        # Hash outside the lock: scrypt is the slow part, the compare-and-set is not.
        new_hash = _hash_password(new_password)
        with self._lock:
            current = self._users.get(user.subject)
            if current is None or current.password_hash != expected_state:
                return False
            self._users[user.subject] = attrs.evolve(current, password_hash=new_hash)
        return True

    def __iter__(self) -> Iterator[MemoryUser]:
        with self._lock:
            return iter(list(self._users.values()))

    def __len__(self) -> int:
        return len(self._users)
