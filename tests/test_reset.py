"""The password-reset flow: no enumeration, rate limits, policy, single-use tokens."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from mailreset import (
    ConfigurationError,
    ExpiredToken,
    InvalidToken,
    MemoryRateLimiter,
    MemoryUser,
    MemoryUserStore,
    NISTPasswordPolicy,
    PasswordReset,
    StaleToken,
    WeakPassword,
    normalize_email,
)
from mailreset.messages import MessageBuilder
from mailreset.testing import extract_token
from mailreset.tokens import TokenService

SECRET = "s3cret-key-for-tests-only-0123456789abcdef"
RESET_PREFIX = "https://app.example/reset/"
PASSWORD = "old password 1"


class StepClock:
    """An aware UTC clock that moves only when told."""

    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def monotonic(self) -> float:
        return self.now.timestamp()


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def tokens(clock: StepClock) -> TokenService:
    return TokenService(SECRET, max_age=600, clock=clock)


@pytest.fixture
def builder() -> MessageBuilder:
    return MessageBuilder(sender="Example <noreply@app.example>")


@pytest.fixture
def users() -> MemoryUserStore:
    store = MemoryUserStore()
    store.add("Alice@Example.org", PASSWORD)
    store.add("kate@example.org", PASSWORD)
    store.add("mike@example.org", PASSWORD)
    return store


@pytest.fixture
def alice(users: MemoryUserStore) -> MemoryUser:
    user = users.find_by_email("alice@example.org")
    assert user is not None
    return user


@pytest.fixture
def make_flow(
    tokens: TokenService,
    builder: MessageBuilder,
    mail_outbox: Any,
    users: MemoryUserStore,
    clock: StepClock,
) -> Iterator[Callable[..., PasswordReset[Any]]]:
    made: list[PasswordReset[Any]] = []

    def make(**options: Any) -> PasswordReset[Any]:
        options.setdefault("reset_url", RESET_PREFIX + "{token}")
        options.setdefault("app_name", "Example")
        options.setdefault("limiter", MemoryRateLimiter(clock=clock.monotonic))
        flow: PasswordReset[Any] = PasswordReset(
            options.pop("tokens", tokens),
            options.pop("builder", builder),
            options.pop("mailer", mail_outbox),
            options.pop("users", users),
            **options,
        )
        made.append(flow)
        return flow

    yield make
    for flow in made:
        flow.close(timeout=10)


@pytest.fixture
def flow(make_flow: Callable[..., PasswordReset[Any]]) -> PasswordReset[Any]:
    return make_flow()


def _reset_token(flow: PasswordReset[Any], outbox: Any, address: str) -> str:
    """Request a reset for ``address`` and return the token of the mail that arrives."""
    before = len(outbox.messages)
    flow.request(address)
    assert flow.flush(timeout=10)
    messages = outbox.wait_for(before + 1)
    return extract_token(messages[-1], RESET_PREFIX)


class Recorder:
    """Wraps an object and records which of its methods ran in which thread."""

    def __init__(self, wrapped: Any, name: str, calls: list[tuple[str, int]]) -> None:
        self._wrapped = wrapped
        self._name = name
        self._calls = calls

    def __getattr__(self, attribute: str) -> Any:
        value = getattr(self._wrapped, attribute)
        if not callable(value):
            return value

        def recorded(*args: Any, **kwargs: Any) -> Any:
            self._calls.append((f"{self._name}.{attribute}", threading.get_ident()))
            return value(*args, **kwargs)

        return recorded


# -- request: the same outcome for every address --------------------------------------------


def test_known_address_gets_a_link_to_the_reset_url(
    flow: PasswordReset[Any], mail_outbox: Any, alice: MemoryUser
) -> None:
    """A known address gets one mail whose link carries a token that verifies to the user."""
    token = _reset_token(flow, mail_outbox, "alice@example.org")

    assert [("Alice@Example.org",)] == [m.envelope_to for m in mail_outbox.messages]
    assert alice == flow.verify(token)


def test_unknown_address_gets_nothing_by_default(
    flow: PasswordReset[Any], mail_outbox: Any
) -> None:
    """An address without an account gets no mail unless notify_unknown is on."""
    result = flow.request("nobody@example.org")
    assert flow.flush(timeout=10)

    assert (None, []) == (result, mail_outbox.messages)


def test_unknown_address_gets_the_notice_when_asked(
    make_flow: Callable[..., PasswordReset[Any]], mail_outbox: Any
) -> None:
    """With notify_unknown, an unknown address gets a notice without any link to reset_url."""
    flow = make_flow(notify_unknown=True, signup_url="https://app.example/signup")
    flow.request("Nobody@Example.org")
    [message] = mail_outbox.wait_for(1)

    assert ("Nobody@Example.org",) == message.envelope_to
    assert [] == [link for link in message.links if link.startswith(RESET_PREFIX)]


def test_caller_path_makes_the_same_calls_for_known_and_unknown(
    tokens: TokenService,
    builder: MessageBuilder,
    mail_outbox: Any,
    users: MemoryUserStore,
    make_flow: Callable[..., PasswordReset[Any]],
) -> None:
    """request() returns None and calls no store, token or mailer method in the caller's thread."""
    calls: list[tuple[str, int]] = []
    flow = make_flow(
        tokens=Recorder(tokens, "tokens", calls),
        users=Recorder(users, "users", calls),
        mailer=Recorder(mail_outbox, "mailer", calls),
        notify_unknown=False,
    )
    caller = threading.get_ident()
    results = [flow.request("alice@example.org"), flow.request("nobody@example.org")]
    assert flow.flush(timeout=10)

    assert [None, None] == results
    assert [] == [name for name, thread in calls if thread == caller]
    assert {"users.find_by_email", "tokens.issue", "mailer.send"} <= {name for name, _ in calls}


def test_unknown_address_costs_the_same_background_work(
    tokens: TokenService,
    builder: MessageBuilder,
    make_flow: Callable[..., PasswordReset[Any]],
    mail_outbox: Any,
) -> None:
    """An unknown address makes the worker issue a token and build a message too, never sent.

    Otherwise the CPU a known address costs in the background would slow the caller's own
    response (the GIL is shared) and tell the two apart.
    """
    work: dict[str, list[str]] = {}
    for address in ("alice@example.org", "nobody@example.org"):
        calls: list[tuple[str, int]] = []
        flow = make_flow(
            tokens=Recorder(tokens, "tokens", calls), builder=Recorder(builder, "builder", calls)
        )
        flow.request(address)
        assert flow.flush(timeout=10)
        work[address] = [name for name, _ in calls]

    assert work["alice@example.org"] == work["nobody@example.org"]
    assert ["tokens.issue", "tokens.verify", "builder.build"] == work["nobody@example.org"]
    assert [("Alice@Example.org",)] == [m.envelope_to for m in mail_outbox.messages]


def test_request_returns_while_the_lookup_is_still_running(
    users: MemoryUserStore, make_flow: Callable[..., PasswordReset[Any]]
) -> None:
    """A slow user store does not hold up the caller: the look-up runs in the background."""
    release = threading.Event()
    entered = threading.Event()

    class SlowLookup(Recorder):
        def find_by_email(self, email: str) -> MemoryUser | None:
            entered.set()
            release.wait(10)
            return users.find_by_email(email)

    flow = make_flow(users=SlowLookup(users, "users", []))
    result = flow.request("alice@example.org")
    assert entered.wait(10)
    done_while_blocked = flow.flush(timeout=0.01)
    release.set()

    assert (None, False, True) == (result, done_while_blocked, flow.flush(timeout=10))


@pytest.mark.parametrize(
    "garbage",
    [
        None,
        42,
        b"alice@example.org",
        ["alice@example.org"],
        "",
        "   ",
        "no-at-sign",
        "a" * 100_000 + "@example.org",
        "alice@example.org\r\nBcc: mallory@evil.example",
        "\x00@\x00",
        "\ud800@example.org",
    ],
)
def test_any_input_returns_none_and_sends_nothing(
    make_flow: Callable[..., PasswordReset[Any]], mail_outbox: Any, garbage: object
) -> None:
    """Garbage of any type returns None, raises nothing and sends nothing, even with notices on."""
    flow = make_flow(notify_unknown=True)
    result = flow.request(garbage)
    assert flow.flush(timeout=10)

    assert (None, []) == (result, mail_outbox.messages)


def test_address_is_normalised_and_mail_goes_to_the_stored_address(
    flow: PasswordReset[Any], mail_outbox: Any
) -> None:
    """Case, surrounding space and Unicode form do not matter; the stored address gets the mail."""
    flow.request("  ALICE@example.ORG\t")
    [message] = mail_outbox.wait_for(1)

    assert ("Alice@Example.org",) == message.envelope_to


def test_unicode_look_alike_never_receives_the_link(
    make_flow: Callable[..., PasswordReset[Any]], mail_outbox: Any
) -> None:
    """A look-alike address (Kelvin sign, dotless i) never gets a reset link (CVE-2019-19844)."""
    flow = make_flow()
    kelvin = "\u212aate@example.org"  # KELVIN SIGN: NFC turns it into "K", so it is kate
    dotless = "m\u0131ke@example.org"  # LATIN SMALL LETTER DOTLESS I: not mike
    flow.request(kelvin)
    flow.request(dotless)
    assert flow.flush(timeout=10)

    assert [("kate@example.org",)] == [m.envelope_to for m in mail_outbox.messages]


def test_inactive_user_gets_nothing(
    flow: PasswordReset[Any], mail_outbox: Any, users: MemoryUserStore, alice: MemoryUser
) -> None:
    """An inactive user is unknown to the flow: no mail."""
    users.deactivate(alice)
    flow.request("alice@example.org")
    assert flow.flush(timeout=10)

    assert [] == mail_outbox.messages


def test_mail_states_the_lifetime_in_minutes(
    make_flow: Callable[..., PasswordReset[Any]], mail_outbox: Any, clock: StepClock
) -> None:
    """The reset mail says how many minutes the link lives."""
    flow = make_flow(tokens=TokenService(SECRET, max_age=timedelta(minutes=45), clock=clock))
    flow.request("alice@example.org")
    [message] = mail_outbox.wait_for(1)

    assert "45" in message.text


def test_reset_url_callable_builds_the_link(
    make_flow: Callable[..., PasswordReset[Any]], mail_outbox: Any
) -> None:
    """A callable reset_url gets the token and its URL goes into the mail."""
    flow = make_flow(reset_url=lambda token: f"https://other.example/r?t={token}&x=1")
    flow.request("alice@example.org")
    [message] = mail_outbox.wait_for(1)

    assert any(link.startswith("https://other.example/r?t=") for link in message.links)


@pytest.mark.parametrize(
    "reset_url",
    [
        "https://app.example/reset",
        "/reset/{token}",
        "ftp://app.example/{token}",
        "https://app.example/reset#{token}",
        "https://app.example/{token}/{token}",
        42,
    ],
)
def test_bad_reset_url_is_refused_when_the_flow_is_made(
    make_flow: Callable[..., PasswordReset[Any]], reset_url: object
) -> None:
    """reset_url must be an absolute http(s) template with the token once, in path or query."""
    with pytest.raises(ConfigurationError, match="reset_url"):
        make_flow(reset_url=reset_url)


# -- rate limits -------------------------------------------------------------------------------


def test_address_limit_stops_mail_but_not_the_answer(
    flow: PasswordReset[Any], mail_outbox: Any
) -> None:
    """Past 3 requests an hour for one address nothing more is sent; the caller sees None."""
    results = [flow.request("alice@example.org") for _ in range(5)]
    assert flow.flush(timeout=10)

    assert ([None] * 5, 3) == (results, len(mail_outbox.messages))


def test_address_limit_lifts_when_the_window_slides(
    flow: PasswordReset[Any], mail_outbox: Any, clock: StepClock
) -> None:
    """An hour after the first requests, the address may ask again."""
    for _ in range(4):
        flow.request("alice@example.org")
    assert flow.flush(timeout=10)
    clock.advance(3601)
    flow.request("alice@example.org")
    assert flow.flush(timeout=10)

    assert 4 == len(mail_outbox.wait_for(4))


def test_client_limit_applies_across_addresses(
    make_flow: Callable[..., PasswordReset[Any]], mail_outbox: Any, clock: StepClock
) -> None:
    """One client may not spray requests over many addresses."""
    limiter = MemoryRateLimiter(per_address=3, per_client=2, clock=clock.monotonic)
    flow = make_flow(limiter=limiter)
    for address in ["alice@example.org", "kate@example.org", "mike@example.org"]:
        flow.request(address, client="203.0.113.7")
    flow.request("mike@example.org", client="198.51.100.1")
    assert flow.flush(timeout=10)

    assert 3 == len(mail_outbox.messages)


def test_custom_limiter_plugs_in(
    make_flow: Callable[..., PasswordReset[Any]], mail_outbox: Any
) -> None:
    """Any object with allow(kind, key) is a limiter; saying no stops the mail."""
    seen: list[tuple[str, str]] = []

    class Deny:
        def allow(self, kind: str, key: str) -> bool:
            seen.append((kind, key))
            return False

    flow = make_flow(limiter=Deny())
    flow.request("Alice@example.org", client="10.0.0.1")
    assert flow.flush(timeout=10)

    assert ([("client", "10.0.0.1")], []) == (seen, mail_outbox.messages)


def test_memory_limiter_counts_a_sliding_window(clock: StepClock) -> None:
    """Each key gets its limit within any window; old hits fall out as time passes."""
    limiter = MemoryRateLimiter(per_address=2, per_client=1, window=100, clock=clock.monotonic)
    first = [limiter.allow("address", "a"), limiter.allow("address", "a")]
    clock.advance(50)
    third = limiter.allow("address", "a")
    clock.advance(51)
    fourth = limiter.allow("address", "a")

    assert ([True, True], False, True) == (first, third, fourth)
    assert [True, False] == [limiter.allow("client", "c"), limiter.allow("client", "c")]


def test_memory_limiter_refuses_bad_settings() -> None:
    """Limits below 1 and windows that are not positive raise ConfigurationError."""
    with pytest.raises(ConfigurationError, match="per_address"):
        MemoryRateLimiter(per_address=0)
    with pytest.raises(ConfigurationError, match="window"):
        MemoryRateLimiter(window=0)


# -- complete: policy, single use --------------------------------------------------------------


def test_complete_sets_the_password_and_notifies(
    flow: PasswordReset[Any], mail_outbox: Any, users: MemoryUserStore, alice: MemoryUser
) -> None:
    """complete() changes the password, mails password_changed to the stored address."""
    token = _reset_token(flow, mail_outbox, "alice@example.org")
    mail_outbox.clear()
    updated = flow.complete(token, "a brand new passphrase")
    [notice] = mail_outbox.wait_for(1)

    assert alice.subject == updated.subject
    assert (True, False) == (
        users.check_password(updated, "a brand new passphrase"),
        users.check_password(updated, PASSWORD),
    )
    assert ("Alice@Example.org",) == notice.envelope_to
    assert [] == [link for link in notice.links if link.startswith(RESET_PREFIX)]


def test_token_dies_after_the_reset(flow: PasswordReset[Any], mail_outbox: Any) -> None:
    """The same link used twice is StaleToken the second time, and verify says None."""
    token = _reset_token(flow, mail_outbox, "alice@example.org")
    flow.complete(token, "a brand new passphrase")

    assert flow.verify(token) is None
    with pytest.raises(StaleToken):
        flow.complete(token, "another new passphrase")


def test_every_outstanding_token_dies_after_the_reset(
    flow: PasswordReset[Any], mail_outbox: Any
) -> None:
    """A reset with one link kills the user's other outstanding links."""
    first = _reset_token(flow, mail_outbox, "alice@example.org")
    second = _reset_token(flow, mail_outbox, "alice@example.org")
    flow.complete(second, "a brand new passphrase")

    with pytest.raises(StaleToken):
        flow.complete(first, "another new passphrase")


def test_one_link_posted_twice_at_once_resets_once(
    flow: PasswordReset[Any], mail_outbox: Any
) -> None:
    """Two concurrent completes with one token: one succeeds, the other gets StaleToken."""
    token = _reset_token(flow, mail_outbox, "alice@example.org")
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def post(password: str) -> None:
        start.wait(10)
        try:
            flow.complete(token, password)
            outcomes.append("ok")
        except StaleToken:
            outcomes.append("stale")

    threads = [
        threading.Thread(target=post, args=(password,))
        for password in ("first new passphrase", "second new passphrase")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert ["ok", "stale"] == sorted(outcomes)


class _MeetBeforeWriting:
    """A store whose set_password waits until every caller got there: all have verified."""

    def __init__(self, wrapped: MemoryUserStore, parties: int) -> None:
        self._wrapped = wrapped
        self._meet = threading.Barrier(parties)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._wrapped, attribute)

    def set_password(self, user: MemoryUser, new_password: str, *, expected_state: str) -> bool:
        self._meet.wait(10)
        return self._wrapped.set_password(user, new_password, expected_state=expected_state)


def test_one_link_completed_by_two_flows_resets_once(
    make_flow: Callable[..., PasswordReset[Any]], mail_outbox: Any, users: MemoryUserStore
) -> None:
    """Two flows (as in two processes: no lock in common) both verify one link, then both
    write: the store's compare-and-set lets exactly one win, the other gets StaleToken."""
    store = _MeetBeforeWriting(users, parties=2)
    flows = [make_flow(users=store), make_flow(users=store)]
    token = _reset_token(flows[0], mail_outbox, "alice@example.org")
    outcomes: list[str] = []

    def post(flow: PasswordReset[Any], password: str) -> None:
        try:
            flow.complete(token, password)
            outcomes.append("ok")
        except StaleToken:
            outcomes.append("stale")

    threads = [
        threading.Thread(target=post, args=(flow, f"new passphrase number {n}"))
        for n, flow in enumerate(flows)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert ["ok", "stale"] == sorted(outcomes)
    assert 1 == len(mail_outbox.find(subject="Your Example password was changed"))


def test_memory_store_sets_the_password_only_from_the_expected_state(
    users: MemoryUserStore, alice: MemoryUser
) -> None:
    """MemoryUserStore.set_password is a compare-and-set: a stale expected state changes
    nothing and says so."""
    state = users.state(alice)
    first = users.set_password(alice, "first new passphrase", expected_state=state)
    second = users.set_password(alice, "second new passphrase", expected_state=state)
    current = users.get(alice.subject)
    assert current is not None

    assert (True, False) == (first, second)
    assert users.check_password(current, "first new passphrase")


def test_a_store_that_answers_no_bool_is_a_configuration_error(
    make_flow: Callable[..., PasswordReset[Any]], mail_outbox: Any, users: MemoryUserStore
) -> None:
    """A set_password that returns None (an old two-argument store made to fit) is reported,
    not taken as a stale link."""

    class NoAnswer(_MeetBeforeWriting):
        def set_password(self, user: MemoryUser, new_password: str, *, expected_state: str) -> Any:
            super().set_password(user, new_password, expected_state=expected_state)
            return None

    flow = make_flow(users=NoAnswer(users, parties=1))
    token = _reset_token(flow, mail_outbox, "alice@example.org")

    with pytest.raises(ConfigurationError, match="set_password must return True"):
        flow.complete(token, "a brand new passphrase")


def test_verify_consumes_nothing(flow: PasswordReset[Any], mail_outbox: Any) -> None:
    """Opening the link (a GET, a mail scanner) any number of times leaves it usable."""
    token = _reset_token(flow, mail_outbox, "alice@example.org")
    seen = [flow.verify(token) for _ in range(3)]

    assert 3 == len([user for user in seen if user is not None])
    assert "1" == flow.complete(token, "a brand new passphrase").subject


def test_weak_password_changes_nothing(
    flow: PasswordReset[Any], mail_outbox: Any, users: MemoryUserStore, alice: MemoryUser
) -> None:
    """A refused password raises WeakPassword; the old password and the link still work."""
    token = _reset_token(flow, mail_outbox, "alice@example.org")
    mail_outbox.clear()
    with pytest.raises(WeakPassword, match="at least 8") as caught:
        flow.complete(token, "short")
    assert flow.flush(timeout=10)

    assert ("Use at least 8 characters",) == (str(caught.value),)
    assert (True, alice, []) == (
        users.check_password(alice, PASSWORD),
        flow.verify(token),
        mail_outbox.messages,
    )


def test_password_equal_to_the_address_is_refused(
    flow: PasswordReset[Any], mail_outbox: Any
) -> None:
    """The user's own address, in any case, is not a password."""
    token = _reset_token(flow, mail_outbox, "alice@example.org")

    with pytest.raises(WeakPassword, match="email address"):
        flow.complete(token, "ALICE@example.org")


def test_custom_policy_plugs_in(
    make_flow: Callable[..., PasswordReset[Any]], mail_outbox: Any
) -> None:
    """A plain function with (password, *, email) is a policy."""

    def no_digits(password: str, *, email: str) -> None:
        if any(char.isdigit() for char in password):
            raise WeakPassword("no digits please")

    flow = make_flow(password_policy=no_digits)
    token = _reset_token(flow, mail_outbox, "alice@example.org")

    with pytest.raises(WeakPassword, match="no digits"):
        flow.complete(token, "abcdefgh1")
    assert "1" == flow.complete(token, "abc").subject


@pytest.mark.parametrize(
    "password",
    [
        "eightch!",
        "correct horse battery staple",
        "alllowercaseletters",
        "пароль-ок",
        "密码很长很长的一句话",
        "abcdefgh" * 8,
        "a b c d e f",
    ],
)
def test_nist_policy_accepts_without_composition_rules(password: str) -> None:
    """Length is what counts: no digits, capitals or symbols are demanded."""
    assert NISTPasswordPolicy()(password, email="alice@example.org") is None


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("1234567", "at least 8"),
        ("x" * 257, "at most 256"),
        ("Password", "too common"),
        ("aaaaaaaaaa", "repeat"),
        ("Alice.Liddell@example.org", "email address"),
        ("alice.liddell", "email address"),
    ],
)
def test_nist_policy_refuses_with_a_reason(password: str, reason: str) -> None:
    """Too short, too long, common, one repeated character, or the user's address."""
    policy = NISTPasswordPolicy()

    with pytest.raises(WeakPassword, match=reason):
        policy(password, email="alice.liddell@example.org")


@pytest.mark.parametrize(
    "password",
    [
        "password ",
        " password",
        "Password\t",
        "pass word",
        "PASSWORD\u00a0",
        "ｐａｓｓｗｏｒｄ",
        "12345678\n",
    ],
)
def test_nist_policy_blocklist_ignores_space_case_and_width(password: str) -> None:
    """A blocked password with white space around or inside it, in capitals or full-width
    forms, is refused like the bare one."""
    with pytest.raises(WeakPassword, match="too common"):
        NISTPasswordPolicy()(password, email="alice@example.org")


def test_nist_policy_blocklist_entries_are_normalised_too() -> None:
    """An app's own blocklist entry matches however it was written."""
    policy = NISTPasswordPolicy(blocklist=[" Hunter2 Hunter2 "])

    with pytest.raises(WeakPassword, match="too common"):
        policy("hunter2  HUNTER2", email="alice@example.org")


def test_nist_policy_gives_every_reason() -> None:
    """WeakPassword.reasons lists each rule the password broke."""
    with pytest.raises(WeakPassword) as caught:
        NISTPasswordPolicy()("alice", email="alice@example.org")

    assert (
        "use at least 8 characters",
        "do not use your email address as your password",
    ) == caught.value.reasons


def test_nist_policy_must_allow_64_characters() -> None:
    """A max_length under 64 is a ConfigurationError (NIST SP 800-63B)."""
    with pytest.raises(ConfigurationError, match="64"):
        NISTPasswordPolicy(max_length=32)


# -- bad tokens of every kind ------------------------------------------------------------------


def _tampered(token: str) -> str:
    head, payload, signature = token.split(".")
    flipped = "A" if signature[5] != "A" else "B"
    return ".".join([head, payload, signature[:5] + flipped + signature[6:]])


@pytest.fixture
def token_cases(
    tokens: TokenService, users: MemoryUserStore, alice: MemoryUser, clock: StepClock
) -> dict[str, tuple[object, type[InvalidToken]]]:
    state = users.state(alice)
    good = tokens.issue("reset_password", alice.subject, bind=state)
    other_key = TokenService("another-secret-key-0123456789abcdefgh", clock=clock)
    return {
        "none": (None, InvalidToken),
        "int": (42, InvalidToken),
        "bytes": (good.encode(), InvalidToken),
        "empty": ("", InvalidToken),
        "garbage": ("not a token at all", InvalidToken),
        "three dots": ("a.b.c", InvalidToken),
        "truncated": (good[:-10], InvalidToken),
        "tampered": (_tampered(good), InvalidToken),
        "other purpose": (
            tokens.issue("verify_email", alice.subject, bind=state),
            InvalidToken,
        ),
        "unbound": (tokens.issue("reset_password", alice.subject), InvalidToken),
        "other key": (
            other_key.issue("reset_password", alice.subject, bind=state),
            InvalidToken,
        ),
        "unknown user": (tokens.issue("reset_password", "999", bind=state), InvalidToken),
        "huge": ("x" * 1_000_000, InvalidToken),
    }


@pytest.mark.parametrize(
    "case",
    [
        "none",
        "int",
        "bytes",
        "empty",
        "garbage",
        "three dots",
        "truncated",
        "tampered",
        "other purpose",
        "unbound",
        "other key",
        "unknown user",
        "huge",
    ],
)
def test_bad_token_of_every_kind(
    flow: PasswordReset[Any],
    token_cases: dict[str, tuple[object, type[InvalidToken]]],
    users: MemoryUserStore,
    alice: MemoryUser,
    case: str,
) -> None:
    """verify() says None and complete() raises InvalidToken, changing nothing."""
    token, error = token_cases[case]

    assert flow.verify(token) is None
    with pytest.raises(error):
        flow.complete(token, "a brand new passphrase")
    assert users.check_password(alice, PASSWORD)


def test_expired_token(
    flow: PasswordReset[Any], mail_outbox: Any, clock: StepClock, users: MemoryUserStore
) -> None:
    """A link past its lifetime is ExpiredToken, and the password stays."""
    token = _reset_token(flow, mail_outbox, "alice@example.org")
    clock.advance(601)

    assert flow.verify(token) is None
    with pytest.raises(ExpiredToken):
        flow.complete(token, "a brand new passphrase")


def test_token_of_a_deactivated_user(
    flow: PasswordReset[Any], mail_outbox: Any, users: MemoryUserStore, alice: MemoryUser
) -> None:
    """A user deactivated after the mail went out cannot use the link."""
    token = _reset_token(flow, mail_outbox, "alice@example.org")
    users.deactivate(alice)

    assert flow.verify(token) is None
    with pytest.raises(InvalidToken):
        flow.complete(token, "a brand new passphrase")


def test_check_tells_expired_from_used(
    flow: PasswordReset[Any], mail_outbox: Any, clock: StepClock
) -> None:
    """check() raises the token's own error so a page can say 'expired' or 'already used'."""
    used = _reset_token(flow, mail_outbox, "alice@example.org")
    old = _reset_token(flow, mail_outbox, "kate@example.org")
    flow.complete(used, "a brand new passphrase")

    with pytest.raises(StaleToken):
        flow.check(used)
    clock.advance(601)
    with pytest.raises(ExpiredToken):
        flow.check(old)


# -- logging, lifecycle ------------------------------------------------------------------------


def test_logs_never_show_tokens(
    flow: PasswordReset[Any], mail_outbox: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing the flow logs, at any level, contains a token."""
    caplog.set_level(logging.DEBUG, logger="mailreset")
    token = _reset_token(flow, mail_outbox, "alice@example.org")
    flow.request("nobody@example.org")
    flow.verify(token)
    flow.complete(token, "a brand new passphrase")
    assert flow.flush(timeout=10)
    logged = "\n".join(record.getMessage() for record in caplog.records)

    assert token not in logged
    assert token.split(".")[2] not in logged
    assert "completed" in logged


def test_mailer_failure_is_logged_not_lost(
    make_flow: Callable[..., PasswordReset[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    """A mailer whose Future fails has the failure logged as an error."""
    from concurrent.futures import Future

    from mailreset import TemporaryFailure

    class Failing:
        def send(self, message: Any) -> Future[Any]:
            future: Future[Any] = Future()
            future.set_exception(TemporaryFailure("451 try later", smtp_code=451))
            return future

        def close(self) -> None:
            pass

    flow = make_flow(mailer=Failing())
    flow.request("alice@example.org")
    assert flow.flush(timeout=10)

    assert ["password reset mail for user 1 failed: 451 try later"] == [
        record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR
    ]


def test_close_finishes_pending_work_then_drops_requests(
    flow: PasswordReset[Any], mail_outbox: Any
) -> None:
    """close() sends what was requested before it; requests after it send nothing."""
    flow.request("alice@example.org")
    flow.close(timeout=10)
    delivered = len(mail_outbox.messages)
    after = flow.request("kate@example.org")

    assert (1, None, 1) == (delivered, after, len(mail_outbox.messages))


def test_bad_options_are_configuration_errors(
    make_flow: Callable[..., PasswordReset[Any]],
) -> None:
    """An empty app_name or workers < 1 is refused when the flow is made."""
    with pytest.raises(ConfigurationError, match="app_name"):
        make_flow(app_name="")
    with pytest.raises(ConfigurationError, match="workers"):
        make_flow(workers=0)


def test_normalize_email_folds_case_space_and_form() -> None:
    """Composed and decomposed forms, case and outer space compare equal."""
    assert "élodie@example.org" == normalize_email(" E\u0301lodie@Example.ORG ")


def test_memory_store_refuses_a_second_account_for_an_address(users: MemoryUserStore) -> None:
    """Two accounts cannot share one normalised address."""
    with pytest.raises(ValueError, match="exists"):
        users.add(" ALICE@example.org", "whatever password")
