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
import os
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, Generic
from urllib.parse import urlsplit

from mailreset._addresses import is_address
from mailreset._convert import whole_number
from mailreset._forks import fork_lock, forks
from mailreset._limits import MemoryRateLimiter, RateLimiter
from mailreset._passwords import NISTPasswordPolicy, PasswordPolicy
from mailreset._redact import describe, escape, redact, safe
from mailreset._shared_limits import SharedRateLimiter
from mailreset._users import MemoryUser, MemoryUserStore, U, UserStore, normalize_email
from mailreset.errors import (
    ConfigurationError,
    InvalidToken,
    MailresetError,
    StaleToken,
    WeakPassword,
)

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
    "SharedRateLimiter",
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
#: Seconds a worker that just finished stays awake for the next request of a burst.
_LINGER = 0.01

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
        # The URL as the template it came from: a live token must not reach the error (it
        # is logged), even when the callable mangled the token beyond recognition.
        shown = redact(url.replace(token, "{token}"))
        raise ConfigurationError(f"{origin} must give an absolute http(s) URL, not {shown!r}")
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
    return escape(f"{local[:1]}***@{domain}")


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
        workers: background threads that do the look-ups and build the messages. They
            start with the first request in each process (a flow made before ``os.fork()``,
            as with gunicorn ``--preload``, works in every child) and sleep while there is
            nothing to do: an idle flow wakes no thread. A worker that just finished stays
            awake for 10 ms and takes the next request when that ends, so the requests of
            a burst do not each pay for waking a thread (a request may start up to 10 ms
            later; a mail is not that urgent).
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
        whole_number("workers", workers)
        whole_number("max_pending", max_pending)
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
        self._workers = workers
        self._closed = False
        self._new_process_state()

    def _new_process_state(self) -> None:
        # Everything a process owns: a child of os.fork() starts over with none of the
        # parent's threads or requests (those are the parent's to finish).
        self._fork = forks[0]
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)  # sleeping workers wait here
        self._linger = threading.Condition(self._lock)  # workers that just finished wait here
        self._done = threading.Condition(self._lock)  # flush() waits here
        self._items: deque[tuple[str, object]] = deque()
        self._pending = 0  # requests queued or being handled
        self._sleeping = 0  # workers blocked in _wakeup.wait(), not yet woken
        self._threads: list[threading.Thread] = []

    def _after_fork(self) -> None:
        with fork_lock[0]:
            if self._fork != forks[0]:
                logger.debug("PasswordReset used in a new process (pid %d)", os.getpid())
                self._new_process_state()

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
        if self._fork != forks[0]:
            self._after_fork()
        with self._lock:
            if self._closed or self._pending >= self._max_pending:
                logger.warning(
                    "password reset dropped: %s",
                    "the flow is closed" if self._closed else f"{self._pending} pending",
                )
                return
            self._pending += 1
            self._items.append((typed, client))
            if not self._threads:
                self._start_workers()
            elif self._sleeping and len(self._threads) - self._sleeping < len(self._items):
                # More requests wait than workers are awake to take them: wake one. In a
                # burst most requests find a worker awake and wake nobody (each wake-up is a
                # system call on this path).
                self._sleeping -= 1
                self._wakeup.notify()

    # -- background work -----------------------------------------------------------------------

    def _start_workers(self) -> None:
        # Lazily, in the process that uses the flow: a flow made before os.fork() (gunicorn
        # --preload) leaves no thread in the parent, and each child starts its own.
        for n in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"mailreset-reset-{n}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _work(self) -> None:
        # Blocks while there is nothing to do: an idle flow wakes no thread. The waker counts
        # the worker awake (``_sleeping -= 1``), so two requests never wake one worker twice.
        # A worker that just finished lingers awake for _LINGER first, counted as awake: the
        # next request of a burst finds it and the caller makes no wake-up call, which costs
        # 3 to 30 us on the caller's path (the thread that just gave up the GIL is woken on
        # the caller's CPU). Lingering ends in sleep, so an idle flow still wakes no thread.
        lock, wakeup, done, items = self._lock, self._wakeup, self._done, self._items
        while True:
            with lock:
                lingered = False
                while not items:
                    if self._closed:
                        return
                    if lingered:
                        self._sleeping += 1
                        wakeup.wait()
                    else:
                        lingered = True
                        self._linger.wait(_LINGER)
                item = items.popleft()
            try:
                self._handle(*item)
            except Exception as error:
                # Not logger.exception: a traceback repeats messages that may hold the link.
                logger.error("password reset request failed: %s", describe(error))
            finally:
                with lock:
                    self._pending -= 1
                    if not self._pending:
                        done.notify_all()

    def _handle(self, typed: str, client: object) -> None:
        address = typed.casefold()
        if not is_address(address):
            logger.info("password reset ignored: not an address")
            return
        if client is not None:
            client_key = str(client)[:_MAX_CLIENT_KEY]
            if not self.limiter.allow("client", client_key):
                logger.warning("password reset rate-limited for client %s", escape(client_key))
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
        self._send(message, f"password reset mail for user {escape(subject)}")

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
        if not is_address(typed):
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
        return self._live(token)[0]

    def _live(self, token: object) -> tuple[U, str]:
        """The token's user and the exact state the token was checked against."""
        if not isinstance(token, str):
            raise InvalidToken("a reset token must be a string")
        seen: list[tuple[U, str]] = []

        def state_of(subject: str) -> str | None:
            # One look-up: the user and the state the token is checked against come from the
            # same read, so complete() compares-and-sets exactly what was verified.
            user = self.users.get(subject)
            if user is None:
                return None
            state = self.users.state(user)
            seen.append((user, state))
            return state

        self.tokens.verify(token, PURPOSE, bind=state_of)
        if not seen:  # pragma: no cover - verify returned without asking for the state
            raise InvalidToken("the user of this token is gone")
        return seen[-1]

    def complete(self, token: object, new_password: object) -> U:
        """Set a new password with a live token; every outstanding link of the user dies.

        Raises the token's error (:class:`~mailreset.errors.InvalidToken`,
        :class:`~mailreset.errors.ExpiredToken`, :class:`~mailreset.errors.StaleToken`) or
        :class:`~mailreset.errors.WeakPassword`; either way nothing changed. On success the
        user gets the ``password_changed`` notice and the updated user is returned.

        Single use holds across threads, processes and machines: the store's
        :meth:`UserStore.set_password` changes the password only while the user's state is
        still the one the token was checked against, so of two completions with one token
        exactly one succeeds and the other raises :class:`~mailreset.errors.StaleToken`.
        """
        user, state = self._live(token)
        subject = self.users.subject(user)
        if not isinstance(new_password, str):
            raise WeakPassword("the password must be text")
        self.password_policy(new_password, email=self.users.email(user))
        changed = self.users.set_password(user, new_password, expected_state=state)
        if not isinstance(changed, bool):
            raise ConfigurationError(
                "UserStore.set_password must return True (the password changed) or False "
                f"(the state had changed already), not {changed!r}"
            )
        if not changed:
            # Another completion (any thread, process or machine) got there first.
            raise StaleToken("the token was already used or superseded (its state changed)")
        updated = self.users.get(subject)
        if updated is None:  # pragma: no cover - a store that hides a user it just updated
            updated = user
        logger.info("password reset completed for user %s", escape(subject))
        context: dict[str, object] = {"app_name": self.app_name}
        if self.support_url is not None:
            context["support_url"] = self.support_url
        try:
            message = self.builder.build(
                "password_changed", to=self.users.email(updated), context=context
            )
            self._send(message, f"password-changed notice for user {escape(subject)}")
        except MailresetError as error:
            # The password is changed; failing the request now would tell the person it is not.
            logger.error(
                "password-changed notice for user %s not sent: %s",
                escape(subject),
                describe(error),
            )
        return updated

    # -- lifecycle -----------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every accepted request was handed to the mailer; False on timeout."""
        if self._fork != forks[0]:
            self._after_fork()
        with self._lock:
            return self._done.wait_for(lambda: not self._pending, timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop accepting requests, finish the pending ones, stop the workers.

        Requests after ``close`` are dropped (and logged). The mailer is left open.
        Raises :class:`TimeoutError` naming what is left when ``timeout`` seconds pass.
        """
        if self._fork != forks[0]:
            self._after_fork()
        with self._lock:
            self._closed = True
            # Workers finish what is queued, then see the flow closed and end.
            self._sleeping = 0
            self._wakeup.notify_all()
            self._linger.notify_all()
            threads = list(self._threads)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
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
        logger.error("%s failed: %s", what, safe(error))
