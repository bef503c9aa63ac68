"""The password-reset flow: request a link, verify it, complete the reset.

:class:`PasswordReset` ties a :class:`~mailreset.tokens.TokenService`, a
:class:`~mailreset.messages.MessageBuilder`, a :class:`~mailreset.mailers.Mailer` and the
app's :class:`UserStore` together the way OWASP's Forgot Password Cheat Sheet asks:

- :meth:`PasswordReset.request` answers the same, in the same time, whether or not the address
  has an account: the caller's thread only normalises the address and hands it to the flow's
  own background worker, which applies the rate limits, looks the user up, issues the token,
  builds the message and gives it to the mailer.
- the mail goes to the address *stored* for the user, never the one typed (the Unicode
  look-alike account takeover of CVE-2019-19844);
- links come only from the configured ``reset_url``, never from a request's Host header;
- the token is bound to :meth:`UserStore.state` (the password hash), so a completed reset
  kills it and every other outstanding link of that user;
- verifying consumes nothing (a mail scanner that opens the link cannot burn it).

.. versionadded:: 0.1
"""

from __future__ import annotations

import logging
import queue
import re
import secrets
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future
from datetime import timedelta
from email.message import EmailMessage
from hashlib import scrypt
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit

import attrs

from mailreset.errors import ConfigurationError, InvalidToken, MailresetError, WeakPassword

if TYPE_CHECKING:
    from mailreset.mailers import Delivery, Mailer
    from mailreset.messages import MessageBuilder
    from mailreset.tokens import TokenService

__all__ = [
    "MemoryRateLimiter",
    "MemoryUser",
    "MemoryUserStore",
    "NISTPasswordPolicy",
    "PasswordPolicy",
    "PasswordReset",
    "RateLimiter",
    "UserStore",
    "normalize_email",
]

logger = logging.getLogger("mailreset")

#: The purpose signed into every reset token.
PURPOSE = "reset_password"

# RFC 5321 caps a path at 256 octets; anything much longer is not an address, and refusing it
# before normalising keeps the caller's path bounded whatever is posted.
_MAX_ADDRESS = 320
_MAX_CLIENT_KEY = 200
# What the "no account here" notice may be sent to: one @, no space, control or lone surrogate.
_ADDRESS_PART = r"[^@\s\x00-\x1f\x7f\ud800-\udfff]+"
_PLAIN_ADDRESS = re.compile(f"{_ADDRESS_PART}@{_ADDRESS_PART}")

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

    def set_password(self, user: U, new_password: str) -> None:
        """Hash and store ``new_password``; this must change :meth:`state`."""
        ...


@runtime_checkable
class RateLimiter(Protocol):
    """**Protocol:** decides whether one more reset mail may go out.

    ``kind`` is ``"address"`` (the normalised address asked for) or ``"client"`` (the
    ``client`` key given to :meth:`PasswordReset.request`, such as an IP). Implement it over a
    shared store (Redis, the database) when the app runs in several processes.

    .. versionadded:: 0.1
    """

    def allow(self, kind: str, key: str) -> bool:
        """Count one attempt for ``key`` and say whether it is within the limit."""
        ...


@runtime_checkable
class PasswordPolicy(Protocol):
    """**Protocol:** checks a new password; a plain function with this signature will do.

    It raises :class:`~mailreset.errors.WeakPassword` with every reason, or returns None.

    .. versionadded:: 0.1
    """

    def __call__(self, password: str, *, email: str) -> None:
        """Refuse ``password`` for the user whose stored address is ``email``, or return."""
        ...


def _seconds(value: float | timedelta) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"a window must be seconds or a timedelta, not {value!r}")
    return float(value)


def _positive_int(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            f"{type(instance).__name__}.{attribute.name} must be a whole number >= 1, "
            f"not {value!r}"
        )


@attrs.define(kw_only=True)
class MemoryRateLimiter:
    """A sliding-window limiter in this process's memory, thread-safe.

    The defaults allow 3 mails per address and 10 per client in any hour, which is plenty
    for a person and little for a script. Each instance keeps its own counts: apps running
    several processes should use a shared :class:`RateLimiter` instead.

    Attributes:
        per_address: attempts allowed per normalised address within ``window``.
        per_client: attempts allowed per client key within ``window``.
        window: the sliding window, in seconds (a timedelta is accepted).
        clock: seconds as a monotonic float (tests pass a fake one).

    .. versionadded:: 0.1
    """

    per_address: int = attrs.field(default=3, validator=_positive_int)
    per_client: int = attrs.field(default=10, validator=_positive_int)
    window: float = attrs.field(default=3600.0, converter=_seconds)
    clock: Callable[[], float] = attrs.field(default=time.monotonic, repr=False)
    _hits: dict[tuple[str, str], deque[float]] = attrs.field(init=False, factory=dict, repr=False)
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock, repr=False)
    _calls: int = attrs.field(init=False, default=0, repr=False)

    def __attrs_post_init__(self) -> None:
        if not self.window > 0:
            raise ConfigurationError(
                f"MemoryRateLimiter.window must be a positive number of seconds, "
                f"not {self.window!r}"
            )

    def allow(self, kind: str, key: str) -> bool:
        """Count one attempt for ``(kind, key)``; False once the limit is reached."""
        limit = self.per_address if kind == "address" else self.per_client
        now = self.clock()
        horizon = now - self.window
        with self._lock:
            self._calls += 1
            if self._calls % 1024 == 0:
                self._sweep(horizon)
            hits = self._hits.setdefault((kind, key), deque())
            while hits and hits[0] <= horizon:
                hits.popleft()
            if len(hits) >= limit:
                return False
            hits.append(now)
            return True

    def _sweep(self, horizon: float) -> None:
        # Keys nobody used within the window would otherwise stay forever.
        stale = [key for key, hits in self._hits.items() if not hits or hits[-1] <= horizon]
        for key in stale:
            del self._hits[key]


# A few of the most common breached passwords of 8+ characters (NIST SP 800-63B 5.1.1.2 asks
# verifiers to refuse known-compromised values); apps can pass a real list.
_COMMON_PASSWORDS = frozenset(
    {
        "password",
        "password1",
        "password123",
        "12345678",
        "123456789",
        "1234567890",
        "123123123",
        "11111111",
        "00000000",
        "qwerty123",
        "qwertyuiop",
        "1q2w3e4r",
        "1qaz2wsx",
        "abc12345",
        "iloveyou",
        "sunshine",
        "princess",
        "football",
        "baseball",
        "welcome1",
        "letmein1",
        "passw0rd",
        "trustno1",
        "superman",
        "starwars",
        "zaq12wsx",
        "asdfghjkl",
        "changeme",
    }
)


def _casefolded(values: Collection[str]) -> frozenset[str]:
    return frozenset(value.casefold() for value in values)


@attrs.frozen(kw_only=True)
class NISTPasswordPolicy:
    """The default policy, after NIST SP 800-63B section 5.1.1.2.

    At least ``min_length`` characters (Unicode code points after NFKC, spaces count), at
    most ``max_length`` (at least 64 must be allowed), no composition rules, not one of the
    ``blocklist`` (case-insensitive), not a single repeated character, and not the user's
    address or its local part.

    Attributes:
        min_length: the fewest characters accepted.
        max_length: the most characters accepted (bounds the cost of hashing).
        blocklist: passwords refused outright, compared case-insensitively.

    .. versionadded:: 0.1
    """

    min_length: int = attrs.field(default=8, validator=_positive_int)
    max_length: int = 256
    blocklist: frozenset[str] = attrs.field(default=_COMMON_PASSWORDS, converter=_casefolded)

    def __attrs_post_init__(self) -> None:
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int):
            raise ConfigurationError(
                f"NISTPasswordPolicy.max_length must be a whole number, not {self.max_length!r}"
            )
        if self.max_length < max(64, self.min_length):
            raise ConfigurationError(
                "NISTPasswordPolicy.max_length must allow at least 64 characters "
                f"(and min_length), not {self.max_length!r}"
            )

    def __call__(self, password: str, *, email: str) -> None:
        """Raise :class:`~mailreset.errors.WeakPassword` with every reason, or return."""
        if not isinstance(password, str):
            raise WeakPassword("the password must be text")
        reasons = []
        normalised = unicodedata.normalize("NFKC", password)
        if len(normalised) < self.min_length:
            reasons.append(f"use at least {self.min_length} characters")
        elif len(normalised) > self.max_length:
            reasons.append(f"use at most {self.max_length} characters")
        folded = normalised.casefold()
        if folded in self.blocklist:
            reasons.append("this password is too common: choose another")
        elif len(set(folded)) == 1 and len(folded) > 1:
            reasons.append("do not repeat a single character")
        address = normalize_email(email) if isinstance(email, str) else ""
        if address and folded.strip() in {address, address.partition("@")[0]}:
            reasons.append("do not use your email address as your password")
        if reasons:
            message = "; ".join(reasons)
            raise WeakPassword(message[:1].upper() + message[1:], reasons=reasons)


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

    def set_password(self, user: MemoryUser, new_password: str) -> None:
        """Store a new salted hash of ``new_password``."""
        with self._lock:
            current = self._users[user.subject]
            self._users[user.subject] = attrs.evolve(
                current, password_hash=_hash_password(new_password)
            )

    def __iter__(self) -> Iterator[MemoryUser]:
        with self._lock:
            return iter(list(self._users.values()))

    def __len__(self) -> int:
        return len(self._users)


_STOP: Any = object()

#: Seconds an idle worker sleeps before it looks for requests again. Workers poll instead of
#: blocking on the queue so that ``request()`` never wakes a thread: waking one is a system
#: call, and on a small machine the woken thread can preempt the caller (measured here: p99
#: 68 us with a blocking queue, against a few us polling). The price is that background work
#: starts up to this long after a request, and an idle flow wakes each worker this often.
_POLL_SECONDS = 0.02
_DECOY_SUBJECT = "decoy"
_DECOY_ADDRESS = "decoy@example.invalid"


def _check_reset_url(reset_url: object) -> Callable[[str], str]:
    if callable(reset_url):
        return reset_url
    if not isinstance(reset_url, str) or reset_url.count("{token}") != 1:
        raise ConfigurationError(
            "reset_url must be a URL template with '{token}' once, such as "
            f"'https://app.example/reset/{{token}}', or a callable token -> URL, not "
            f"{reset_url!r}"
        )
    _check_link(reset_url.replace("{token}", "TOKEN"), "TOKEN", "reset_url")
    template = reset_url
    return lambda token: template.replace("{token}", token)


def _check_link(url: str, token: str, origin: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ConfigurationError(f"{origin} must give an absolute http(s) URL, not {url!r}")
    if token not in parts.path and token not in parts.query:
        raise ConfigurationError(
            f"{origin} must put the token in the path or the query of the URL (a fragment "
            "never reaches the server)"
        )
    return url


def _mask(address: str) -> str:
    local, at, domain = address.rpartition("@")
    if not at:
        return "<not an address>"
    return f"{local[:1]}***@{domain}"


class PasswordReset(Generic[U]):
    """The whole password-reset flow, framework-free.

    Args:
        tokens: signs and checks the reset tokens (purpose ``"reset_password"``).
        builder: builds the ``reset_password``, ``password_changed`` and
            ``reset_password_unknown`` messages.
        mailer: sends them (a ``ThreadedMailer`` in an app, the ``mail_outbox`` in tests).
            The flow never closes it: whoever made it does.
        users: the app's :class:`UserStore`.
        reset_url: ``"https://app.example/reset/{token}"`` or a callable ``token -> URL``.
            The token must land in the path or query. Never build it from a request's Host.
        app_name: the app's name, for the messages.
        limiter: a :class:`RateLimiter`; default a :class:`MemoryRateLimiter`.
        password_policy: a :class:`PasswordPolicy`; default :class:`NISTPasswordPolicy`.
        notify_unknown: mail a "no account here" notice (``reset_password_unknown``) to
            addresses without an account; off by default.
        signup_url: offered in that notice, when given.
        support_url: offered in the ``password_changed`` notice, when given.
        workers: background threads that do the look-ups and build the messages.
        max_pending: requests waiting for a worker beyond which new ones are dropped (and
            logged), so a flood cannot exhaust memory; the caller still sees nothing.

    Call :meth:`close` when done (an app: at exit); it waits for the background work.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        tokens: TokenService,
        builder: MessageBuilder,
        mailer: Mailer,
        users: UserStore[U],
        *,
        reset_url: str | Callable[[str], str],
        app_name: str,
        limiter: RateLimiter | None = None,
        password_policy: PasswordPolicy | None = None,
        notify_unknown: bool = False,
        signup_url: str | None = None,
        support_url: str | None = None,
        workers: int = 2,
        max_pending: int = 10_000,
    ) -> None:
        self._link = _check_reset_url(reset_url)
        self._link_is_template = isinstance(reset_url, str)
        if not isinstance(app_name, str) or not app_name.strip():
            raise ConfigurationError(f"app_name must be a non-empty string, not {app_name!r}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigurationError(f"workers must be a whole number >= 1, not {workers!r}")
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ConfigurationError(
                f"max_pending must be a whole number >= 1, not {max_pending!r}"
            )
        self.tokens = tokens
        self.builder = builder
        self.mailer = mailer
        self.users = users
        self.app_name = app_name
        self.limiter: RateLimiter = MemoryRateLimiter() if limiter is None else limiter
        self.password_policy: PasswordPolicy = (
            NISTPasswordPolicy() if password_policy is None else password_policy
        )
        self.notify_unknown = notify_unknown
        self.signup_url = signup_url
        self.support_url = support_url
        self._max_pending = max_pending
        self._queue: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
        self._pending = 0
        self._idle = threading.Condition()
        self._closed = False
        self._stripes = tuple(threading.Lock() for _ in range(64))
        self._threads = [
            threading.Thread(target=self._work, name=f"mailreset-reset-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    # -- the caller's path ---------------------------------------------------------------------

    def request(self, email: object, *, client: object = None) -> None:
        """Start a reset for ``email``; returns None at once, whatever the address.

        Known, unknown, inactive, rate-limited, malformed or not even a string: the caller
        sees the same thing in about the same time, because only the normalisation happens
        here. ``client`` keys the per-client limit (the remote IP, say).
        """
        # Keep this path tiny and the same for every input: the benchmark holds it < 100 us.
        if not isinstance(email, str) or len(email) > _MAX_ADDRESS:
            logger.info("password reset ignored: not an address (%s)", type(email).__name__)
            return
        typed = unicodedata.normalize("NFC", email.strip())
        with self._idle:
            if self._closed or self._pending >= self._max_pending:
                logger.warning(
                    "password reset dropped: %s",
                    "the flow is closed" if self._closed else f"{self._pending} pending",
                )
                return
            self._pending += 1
            # Under the lock, so nothing can be queued behind close()'s stop markers.
            self._queue.put((typed, client))

    # -- background work -----------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                time.sleep(_POLL_SECONDS)
                continue
            if item is _STOP:
                return
            try:
                self._handle(*item)
            except Exception:
                logger.exception("password reset request failed")
            finally:
                with self._idle:
                    self._pending -= 1
                    if not self._pending:
                        self._idle.notify_all()

    def _handle(self, typed: str, client: object) -> None:
        address = typed.casefold()
        if "@" not in address:
            logger.info("password reset ignored: not an address")
            return
        if client is not None:
            client_key = str(client)[:_MAX_CLIENT_KEY]
            if not self.limiter.allow("client", client_key):
                logger.warning("password reset rate-limited for client %s", client_key)
                return
        if not self.limiter.allow("address", address):
            logger.warning("password reset rate-limited for %s", _mask(address))
            return
        user = self.users.find_by_email(address)
        if user is None:
            self._unknown(typed)
            return
        subject = self.users.subject(user)
        # The stored address, never the typed one (CVE-2019-19844).
        message = self._reset_message(subject, self.users.state(user), self.users.email(user))
        self._send(message, f"password reset mail for user {subject}")

    def _reset_message(self, subject: str, state: str, to: str) -> EmailMessage:
        token = self.tokens.issue(PURPOSE, subject, bind=state)
        claims = self.tokens.verify(token, PURPOSE, bind=state)
        seconds = (claims.expires_at - claims.issued_at).total_seconds()
        url = self._link(token)
        if not self._link_is_template:
            _check_link(url, token, "reset_url")
        return self.builder.build(
            "reset_password",
            to=to,
            context={
                "url": url,
                "expires_minutes": max(1, round(seconds / 60)),
                "app_name": self.app_name,
            },
        )

    def _decoy(self) -> None:
        # An unknown address costs the same work as a known one, minus the sending: otherwise
        # the CPU a known address makes this thread burn would slow the caller's response
        # (the GIL is shared), a timing signal an attacker could average out.
        self._reset_message(_DECOY_SUBJECT, _DECOY_SUBJECT, _DECOY_ADDRESS)

    def _unknown(self, typed: str) -> None:
        if not self.notify_unknown:
            logger.info("password reset for an unknown address: %s", _mask(typed))
            self._decoy()
            return
        if not _PLAIN_ADDRESS.fullmatch(typed):
            logger.info("unknown-address notice not sent: not a plain address")
            return
        context: dict[str, object] = {"app_name": self.app_name}
        if self.signup_url is not None:
            context["signup_url"] = self.signup_url
        message = self.builder.build("reset_password_unknown", to=typed, context=context)
        self._send(message, f"unknown-address notice to {_mask(typed)}")

    def _send(self, message: Any, what: str) -> None:
        future: Future[Delivery] = self.mailer.send(message)
        future.add_done_callback(lambda done: _log_outcome(done, what))

    # -- verifying and completing --------------------------------------------------------------

    def _state_of(self, subject: str) -> str | None:
        user = self.users.get(subject)
        return None if user is None else self.users.state(user)

    def verify(self, token: object) -> U | None:
        """The user a live reset token belongs to, or None for any token that is not.

        Consumes nothing: opening the link (or a mail scanner opening it) keeps it usable.
        """
        try:
            return self._live_user(token)
        except InvalidToken:
            return None

    def check(self, token: object) -> U:
        """Like :meth:`verify` but raises the token's error, so a page can say which.

        Raises :class:`~mailreset.errors.ExpiredToken` ("this link expired"),
        :class:`~mailreset.errors.StaleToken` ("this link was already used") or
        :class:`~mailreset.errors.InvalidToken`.
        """
        return self._live_user(token)

    def _live_user(self, token: object) -> U:
        if not isinstance(token, str):
            raise InvalidToken("a reset token must be a string")
        claims = self.tokens.verify(token, PURPOSE, bind=self._state_of)
        user = self.users.get(claims.subject)
        if user is None:
            raise InvalidToken("the user of this token is gone")
        return user

    def complete(self, token: object, new_password: object) -> U:
        """Set a new password with a live token; every outstanding link of the user dies.

        Raises the token's error (:class:`~mailreset.errors.InvalidToken`,
        :class:`~mailreset.errors.ExpiredToken`, :class:`~mailreset.errors.StaleToken`) or
        :class:`~mailreset.errors.WeakPassword`; either way nothing changed. On success the
        user gets the ``password_changed`` notice and the updated user is returned.
        """
        subject = self.users.subject(self._live_user(token))
        # Two posts of one link at once: the second waits, then finds the token stale. (Across
        # processes, the store's set_password would have to compare-and-set the state.)
        with self._stripes[hash(subject) % len(self._stripes)]:
            user = self._live_user(token)
            if not isinstance(new_password, str):
                raise WeakPassword("the password must be text")
            self.password_policy(new_password, email=self.users.email(user))
            self.users.set_password(user, new_password)
        updated = self.users.get(subject)
        if updated is None:  # pragma: no cover - a store that hides a user it just updated
            updated = user
        logger.info("password reset completed for user %s", subject)
        context: dict[str, object] = {"app_name": self.app_name}
        if self.support_url is not None:
            context["support_url"] = self.support_url
        try:
            message = self.builder.build(
                "password_changed", to=self.users.email(updated), context=context
            )
            self._send(message, f"password-changed notice for user {subject}")
        except MailresetError:
            # The password is changed; failing the request now would tell the person it is not.
            logger.exception("password-changed notice for user %s not sent", subject)
        return updated

    # -- lifecycle -----------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every accepted request was handed to the mailer; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop accepting requests, finish the pending ones, stop the workers.

        Requests after ``close`` are dropped (and logged). The mailer is left open.
        Raises :class:`TimeoutError` naming what is left when ``timeout`` seconds pass.
        """
        with self._idle:
            if not self._closed:
                self._closed = True
                for _ in self._threads:
                    self._queue.put(_STOP)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(left)
            if thread.is_alive():
                raise TimeoutError(
                    f"PasswordReset.close: {self._pending} request(s) still pending after "
                    f"{timeout}s; a slow UserStore or mailer? pass a longer timeout"
                )

    def __enter__(self) -> PasswordReset[U]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"pending={self._pending}"
        return f"<PasswordReset app_name={self.app_name!r} {state}>"


def _log_outcome(future: Future[Any], what: str) -> None:
    error = future.exception()
    if error is not None:
        logger.error("%s failed: %s", what, error)
