"""What a full ThreadedMailer queue costs in memory, against the messages' size on the wire.

``ThreadedMailer.send`` queues the message object itself (serialising there would cost the
caller ~300 us), so a queue of ``max_queue`` messages holds ``max_queue`` message objects.
DESIGN.md: a full queue costs no more than about 2x the messages' wire size.

The server does not answer: the mailer's one connection is held by a gate (an Event) before
each send, so the first message waits in the worker and the rest in the queue. Memory is
measured with tracemalloc, after ``gc.collect()``: everything the sends left alive (messages,
queue items, caches grown) divided by the number of messages, against the mean size of the
same messages on the wire. Then the gate opens, everything is delivered to a real aiosmtpd
capture sink, and the count is checked (nothing may be lost).

(a) messages from ``MessageBuilder.build`` (the bundled reset_password with a distinct
recipient and token each): the target applies. (b) the same content built by hand with
``EmailMessage(policy=email.policy.default)``: reported for information (policy.default
keeps every header's parse tree, which costs several times the message).
"""

from __future__ import annotations

import email.policy
import gc
import secrets
import threading
import tracemalloc
from collections.abc import Callable
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import jinja2

from devtools.bench.bench_messages import CONTEXT, SENDER, _anchor
from devtools.bench.harness import Comparison, Options
from mailreset import MessageBuilder, SMTPTransport, ThreadedMailer
from mailreset.mailers import Delivery
from mailreset.testing import SMTPSink

GATE_TIMEOUT = 120.0  # the longest a worker waits at the gate: the bench never hangs forever


class GatedTransport:
    """An SMTPTransport whose every send first waits for ``gate`` (a server that stalls)."""

    def __init__(self, inner: SMTPTransport, gate: threading.Event) -> None:
        self.inner = inner
        self.gate = gate

    def open(self) -> None:
        self.inner.open()

    def send(self, message: Any) -> Delivery:
        if not self.gate.wait(GATE_TIMEOUT):
            raise RuntimeError(f"the bench did not open the gate within {GATE_TIMEOUT}s")
        return self.inner.send(message)

    def close(self) -> None:
        self.inner.close()


def _context() -> dict[str, Any]:
    """The reset mail's context with a fresh token-sized link (a JWT is ~150 characters)."""
    return {**CONTEXT, "url": f"https://acme.example/reset/{secrets.token_urlsafe(110)}"}


def _by_hand(text: jinja2.Template, html: jinja2.Template) -> Callable[[int], EmailMessage]:
    def make(number: int) -> EmailMessage:
        context = _context()
        message = EmailMessage(policy=email.policy.default)
        message["From"] = SENDER
        message["To"] = f"Reader {number} <reader{number}@example.com>"
        message["Subject"] = f"Reset your {context['app_name']} password"
        message["Date"] = datetime.now(timezone.utc)
        message["Message-ID"] = make_msgid(domain="acme.example")
        message.set_content(text.render(context))
        message.add_alternative(html.render(context), subtype="html")
        return message

    return make


def _with_builder(builder: MessageBuilder) -> Callable[[int], EmailMessage]:
    def make(number: int) -> EmailMessage:
        return builder.build(
            "reset_password",
            to=f"Reader {number} <reader{number}@example.com>",
            context=_context(),
        )

    return make


def queued_cost(
    sink: SMTPSink, make: Callable[[int], EmailMessage], count: int
) -> tuple[float, float]:
    """(bytes held per queued message, mean wire bytes per message) for ``count`` messages."""
    sink.clear()
    gate = threading.Event()
    mailer = ThreadedMailer(
        lambda: GatedTransport(SMTPTransport(sink.settings), gate),
        workers=1,
        max_queue=count,
    )
    try:
        for number in range(5):  # warm up: caches filled, the worker started and waiting
            mailer.send(make(count + number))
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for number in range(count - 5):
                mailer.send(make(number))
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        # Per measured message; with the 5 warm-up ones the queue holds count in all.
        per_message = held / (count - 5)
    finally:
        gate.set()
        mailer.close(timeout=60.0)
    received = sink.wait_for(count, timeout=30.0)
    if len(received) != count:
        raise RuntimeError(f"{count - len(received)} of {count} messages were lost")
    wire = sum(len(message.raw) for message in received) / count
    return per_message, wire


def run(options: Options) -> list[Comparison]:
    """Bytes per queued message against wire bytes, for built and hand-made messages."""
    count = 300 if options.quick else 5000
    text, html = _anchor()
    with SMTPSink() as sink:
        ours, ours_wire = queued_cost(sink, _with_builder(MessageBuilder(sender=SENDER)), count)
        theirs, theirs_wire = queued_cost(sink, _by_hand(text, html), count)
    return [
        Comparison(
            name=f"queued MessageBuilder message ({count})",
            ours=ours,
            anchor=ours_wire,
            anchor_name="its size on the wire",
            unit="bytes/msg",
            target=0.5,
            higher_is_better=False,
            notes=[f"held / wire = {ours / ours_wire:.2f}x (target: about 2x at most)"],
        ),
        Comparison(
            name=f"queued EmailMessage(policy=default) ({count})",
            ours=theirs,
            anchor=theirs_wire,
            anchor_name="its size on the wire (information only)",
            unit="bytes/msg",
            higher_is_better=False,
            notes=[f"held / wire = {theirs / theirs_wire:.2f}x"],
        ),
    ]
