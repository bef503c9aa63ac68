"""Exercises the reset flow's public API under mypy --strict (never run, only type-checked)."""

from __future__ import annotations

from concurrent.futures import Future
from email.message import Message

import mailreset
from mailreset.reset import MemoryUser, PasswordPolicy, RateLimiter, UserStore


class DiscardMailer:
    def send(self, message: Message | mailreset.Envelope) -> Future[mailreset.Delivery]:
        return Future()

    def close(self) -> None:
        pass


def min_twelve(password: str, *, email: str) -> None:
    if len(password) < 12:
        raise mailreset.WeakPassword("use at least 12 characters")


users = mailreset.MemoryUserStore()
store: UserStore[MemoryUser] = users
limiter: RateLimiter = mailreset.MemoryRateLimiter(per_address=2, window=600)
policy: PasswordPolicy = min_twelve
default_policy: PasswordPolicy = mailreset.NISTPasswordPolicy(min_length=10)
flow: mailreset.PasswordReset[MemoryUser] = mailreset.PasswordReset(
    mailreset.TokenService("k" * 32),
    mailreset.MessageBuilder(sender="app@example.org"),
    DiscardMailer(),
    users,
    reset_url="https://app.example/reset/{token}",
    app_name="App",
    limiter=limiter,
    password_policy=policy,
)
flow.request("a@example.org", client="203.0.113.1")
maybe: MemoryUser | None = flow.verify("token")
changed: MemoryUser = flow.complete("token", "a new password")
flushed: bool = flow.flush(timeout=1.0)
key: str = mailreset.normalize_email(" A@Example.org ")
flow.close()
