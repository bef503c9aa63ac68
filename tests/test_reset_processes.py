"""PasswordReset and processes: made before os.fork() it works in the child; idle, it sleeps."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailreset import MemoryRateLimiter, MemoryUserStore, PasswordReset, ThreadedMailer
from mailreset.messages import MessageBuilder
from mailreset.testing import SMTPSink
from mailreset.tokens import TokenService
from tests.process_support import run_in_fork, voluntary_switches

SECRET = "s3cret-key-for-tests-only-0123456789abcdef"
ADDRESSES = ["parent@example.org", "child1@example.org", "child2@example.org"]


def _flow(mailer: Any, users: MemoryUserStore) -> PasswordReset[Any]:
    return PasswordReset(
        TokenService(SECRET),
        MessageBuilder(sender="Example <noreply@app.example>"),
        mailer,
        users,
        reset_url="https://app.example/reset/{token}",
        app_name="Example",
        limiter=MemoryRateLimiter(),
    )


@pytest.fixture
def users() -> MemoryUserStore:
    store = MemoryUserStore()
    for address in ADDRESSES:
        store.add(address, "a password 123")
    return store


def _flow_threads(prefix: str = "mailreset-reset-") -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def test_a_new_flow_starts_no_thread(users: MemoryUserStore, mail_outbox: Any) -> None:
    """Made and not used (a gunicorn --preload master), a flow has no thread to fork."""
    before = _flow_threads()
    flow = _flow(mail_outbox, users)
    made = _flow_threads()
    flow.request(ADDRESSES[0])
    assert flow.flush(timeout=10)
    used = _flow_threads()
    flow.close(timeout=10)

    assert before == made
    assert len(used) > len(before)
    assert 1 == len(mail_outbox.messages)


def test_flow_made_before_fork_sends_from_the_child(
    users: MemoryUserStore, smtp_sink: SMTPSink
) -> None:
    """Used in the parent, then forked: the child's requests are mailed by its own workers,
    and the parent's go on working; every mail arrives once at the real SMTP server."""
    mailer = ThreadedMailer(smtp_sink.settings)
    flow = _flow(mailer, users)
    flow.request(ADDRESSES[0])
    assert flow.flush(timeout=10)
    smtp_sink.wait_for(1)

    def in_child() -> None:
        flow.request(ADDRESSES[1])
        flow.request(ADDRESSES[2])
        assert flow.flush(timeout=10)
        assert mailer.flush(timeout=10)
        flow.close(timeout=10)
        mailer.close(10)

    code = run_in_fork(in_child)
    flow.request(ADDRESSES[0])  # the parent still works after the fork
    assert flow.flush(timeout=10)
    flow.close(timeout=10)
    mailer.close(10)

    assert 0 == code
    arrived = sorted(to for message in smtp_sink.wait_for(4) for to in message.envelope_to)
    assert sorted([ADDRESSES[0], *ADDRESSES]) == arrived


@pytest.fixture
def used_flow(users: MemoryUserStore, smtp_sink: SMTPSink) -> Iterator[PasswordReset[Any]]:
    """A flow over a real ThreadedMailer, each of its workers used at least once."""
    mailer = ThreadedMailer(smtp_sink.settings)
    flow = _flow(mailer, users)
    for address in ADDRESSES:
        flow.request(address)
    assert flow.flush(timeout=10)
    assert mailer.flush(timeout=10)
    smtp_sink.wait_for(len(ADDRESSES))
    yield flow
    flow.close(timeout=10)
    mailer.close(10)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads Linux's /proc")
def test_idle_flow_and_mailer_wake_no_thread(used_flow: PasswordReset[Any]) -> None:
    """An idle flow's workers and its mailer's sleep: over 2 s, each switches in at most
    twice (a worker polling every 20 ms would switch about 100 times)."""
    threads = _flow_threads() + _flow_threads("mailreset-worker-")
    assert len(threads) > 2, "the flow's or the mailer's workers did not start"
    time.sleep(0.2)  # let the workers settle into their wait
    before = {thread.name: voluntary_switches(thread.native_id) for thread in threads}
    time.sleep(2.0)
    after = {thread.name: voluntary_switches(thread.native_id) for thread in threads}

    woken = {name: after[name] - before[name] for name in before}
    assert all(count <= 2 for count in woken.values()), woken


def test_idle_flow_still_answers_the_next_request(
    used_flow: PasswordReset[Any], smtp_sink: SMTPSink
) -> None:
    """A request after a quiet spell wakes a sleeping worker at once."""
    time.sleep(0.2)
    smtp_sink.clear()
    used_flow.request(ADDRESSES[1])

    assert used_flow.flush(timeout=10)
    assert [(ADDRESSES[1],)] == [message.envelope_to for message in smtp_sink.wait_for(1)]


class _CountedWakeUps:
    """Counts the flow's wake-up calls to its sleeping workers (a notify on ``_wakeup``)."""

    def __init__(self, flow: PasswordReset[Any], monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        notify = flow._wakeup.notify

        def counted(n: int = 1) -> None:
            self.calls += 1
            notify(n)

        monkeypatch.setattr(flow._wakeup, "notify", counted)


def _flow_that_sent_one(
    users: MemoryUserStore, outbox: Any, monkeypatch: pytest.MonkeyPatch, linger: float
) -> tuple[PasswordReset[Any], _CountedWakeUps]:
    """A flow whose workers lingering ``linger`` s have handled one request, and the count
    of wake-up calls from then on."""
    monkeypatch.setattr("mailreset.reset._LINGER", linger)
    flow = _flow(outbox, users)
    flow.request(ADDRESSES[0])  # starts the workers
    assert flow.flush(timeout=10)
    return flow, _CountedWakeUps(flow, monkeypatch)


@pytest.mark.parametrize(
    ("linger", "quiet", "wake_up_calls"),
    [
        # A linger longer than any stall of a test machine: the next request finds it.
        pytest.param(1.0, 0.0, 0, id="soon-after-the-last"),
        pytest.param(0.05, 0.5, 1, id="after-a-quiet-spell"),
    ],
)
def test_a_worker_lingers_then_sleeps(
    *,
    users: MemoryUserStore,
    mail_outbox: Any,
    monkeypatch: pytest.MonkeyPatch,
    linger: float,
    quiet: float,
    wake_up_calls: int,
) -> None:
    """A worker that just finished lingers awake: the next request of a burst is taken
    without a wake-up call on the caller's path (each costs the caller 3 to 30 us) when the
    linger ends. Lingering ends in sleep: after a quiet spell a request makes one wake-up
    call and is handled at once, not when some timeout ends."""
    flow, wake_ups = _flow_that_sent_one(users, mail_outbox, monkeypatch, linger=linger)
    time.sleep(quiet)
    # From here a lingering worker would hold the request past flush()'s timeout.
    monkeypatch.setattr("mailreset.reset._LINGER", 60.0)

    flow.request(ADDRESSES[1])
    assert flow.flush(timeout=10)
    calls = wake_ups.calls
    flow.close(timeout=10)

    assert wake_up_calls == calls
    assert 2 == len(mail_outbox.messages)


def test_close_ends_lingering_workers_at_once(
    users: MemoryUserStore, mail_outbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() does not wait out a linger: lingering workers are told to stop."""
    monkeypatch.setattr("mailreset.reset._LINGER", 60.0)
    before = _flow_threads()
    flow = _flow(mail_outbox, users)
    flow.request(ADDRESSES[0])
    assert flow.flush(timeout=10)
    ours = [thread for thread in _flow_threads() if thread not in before]
    assert ours, "the flow started no worker"

    flow.close(timeout=5)  # raises TimeoutError if a worker still lingers

    assert not [thread for thread in ours if thread.is_alive()]


def test_fork_while_the_workers_linger(
    users: MemoryUserStore, mail_outbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forked while the parent's workers linger (the linger is long enough to be sure), the
    child starts its own workers and mails its requests; the parent goes on mailing too."""
    monkeypatch.setattr("mailreset.reset._LINGER", 2.0)
    flow = _flow(mail_outbox, users)
    flow.request(ADDRESSES[0])
    assert flow.flush(timeout=10)

    def in_child() -> None:
        flow.request(ADDRESSES[1])
        flow.request(ADDRESSES[2])
        assert flow.flush(timeout=10)
        flow.close(timeout=10)
        assert [(ADDRESSES[1],), (ADDRESSES[2],)] == sorted(
            tuple(message.envelope_to) for message in mail_outbox.messages[1:]
        )

    code = run_in_fork(in_child)
    flow.request(ADDRESSES[0])  # taken by a parent's worker when its linger ends
    assert flow.flush(timeout=10)
    flow.close(timeout=10)

    assert 0 == code
    assert [(ADDRESSES[0],), (ADDRESSES[0],)] == [
        tuple(message.envelope_to) for message in mail_outbox.messages
    ]
