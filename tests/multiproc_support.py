"""Child processes for the multi-process tests: ``python -m tests.multiproc_support ...``.

``complete DB TOKEN PASSWORD MEET_DIR PARTIES``: completes one reset with the examples' SQLite
store and prints ``ok`` or ``stale``. Its ``set_password`` first leaves a mark in MEET_DIR and
waits (bounded) until PARTIES processes left theirs, so every process has verified the token
before any of them writes: the race is forced, not hoped for.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from examples.sqlite_users import SQLiteUsers, User

from mailreset import PasswordReset, StaleToken, SyncMailer
from mailreset.messages import MessageBuilder
from mailreset.tokens import TokenService
from mailreset.transports import MemoryTransport

SECRET = "multiproc-test-secret-0123456789abcdef"
RESET_PREFIX = "https://app.example/reset/"
#: How long a child waits for the others before it writes anyway (the test then fails).
MEET_TIMEOUT = 20.0


class MeetingUsers(SQLiteUsers):
    """The SQLite store, with every process meeting the others before it writes."""

    def __init__(self, path: str, meet: Path, parties: int) -> None:
        super().__init__(path, password_cost=2**4)
        self.meet = meet
        self.parties = parties

    def set_password(self, user: User, new_password: str, *, expected_state: str) -> bool:
        """Wait until every process has verified, then compare-and-set."""
        (self.meet / str(os.getpid())).touch()
        deadline = time.monotonic() + MEET_TIMEOUT
        while len(list(self.meet.iterdir())) < self.parties and time.monotonic() < deadline:
            time.sleep(0.005)
        return super().set_password(user, new_password, expected_state=expected_state)


def make_flow(users: Any) -> PasswordReset[Any]:
    """A flow over ``users`` whose mail stays in memory."""
    return PasswordReset(
        TokenService(SECRET),
        MessageBuilder(sender="App <noreply@app.example>"),
        SyncMailer(MemoryTransport()),
        users,
        reset_url=RESET_PREFIX + "{token}",
        app_name="Example",
    )


def complete(db: str, token: str, password: str, meet: str, parties: str) -> str:
    """Complete the reset in this process: ``ok``, or ``stale`` when another won."""
    flow = make_flow(MeetingUsers(db, Path(meet), int(parties)))
    try:
        flow.complete(token, password)
    except StaleToken:
        return "stale"
    finally:
        flow.close()
    return "ok"


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    if command != "complete":
        raise SystemExit(f"unknown command {command!r}")
    print(complete(*arguments), flush=True)
