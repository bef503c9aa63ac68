"""The block the debug sink prints per message: time, from, to, subject and the links.

The block is made for a developer who wants to click the reset link straight from the
terminal, so every link sits alone on its line. Printing happens in a thread of its own: a
terminal that is slow or paused never holds up the SMTP server. Header text is cleaned of
control characters, so a message cannot send escape sequences to the developer's terminal.

Summaries parse with the fast ``compat32`` policy (about 80 us a message, against well over
a millisecond for ``policy.default``) so printing keeps pace with the SMTP server.
"""

from __future__ import annotations

import email
import email.policy
import html
import queue
import re
import threading
from email.header import decode_header, make_header
from email.message import Message
from typing import TextIO

import attrs

from devtools.sink.store import StoredMessage

__all__ = ["Summary", "TerminalPrinter", "format_block", "summarize"]

_URL_IN_TEXT = re.compile(r"""https?://[^\s<>"'()\[\]]+""")
_HREF = re.compile(r"""<a\s[^>]*?href\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)
_TRAILING_PUNCTUATION = ".,;:!?"
# C0/C1 controls, bidi overrides and zero-width characters: never echoed to a terminal.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
MAX_LINKS = 10


@attrs.frozen(kw_only=True)
class Summary:
    """What the terminal block shows about one message.

    Attributes:
        sender: the envelope sender.
        recipients: the envelope recipients.
        subject: the decoded Subject header.
        links: the http(s) links of the HTML and text parts, first seen first.
    """

    sender: str
    recipients: tuple[str, ...]
    subject: str
    links: tuple[str, ...]


def summarize(stored: StoredMessage) -> Summary:
    """Read the fields of the terminal block from a stored message, quickly."""
    captured = stored.message
    parsed = email.message_from_bytes(captured.raw, policy=email.policy.compat32)
    return Summary(
        sender=captured.envelope_from,
        recipients=tuple(captured.envelope_to),
        subject=_decoded(parsed.get("Subject", "")),
        links=_links(parsed),
    )


def format_block(stored: StoredMessage, *, viewer_url: str | None = None) -> str:
    """The terminal block for ``stored``: a header line, then one field per line."""
    summary = summarize(stored)
    when = stored.message.received_at.astimezone().strftime("%H:%M:%S")
    lines = [f"--- {when}  message {stored.id}  ({stored.message.size} bytes) ---"]
    lines.append(f"  From:    {_clean(summary.sender) or '<>'}")
    lines.append(f"  To:      {_clean(', '.join(summary.recipients))}")
    lines.append(f"  Subject: {_clean(summary.subject)}")
    lines.extend(f"  Link:    {_clean(link)}" for link in summary.links[:MAX_LINKS])
    if len(summary.links) > MAX_LINKS:
        lines.append(f"           (+{len(summary.links) - MAX_LINKS} more links)")
    if viewer_url:
        lines.append(f"  View:    {viewer_url.rstrip('/')}/#/messages/{stored.id}")
    return "\n".join(lines) + "\n"


class TerminalPrinter:
    """Prints a block per stored message to ``stream`` from a background thread.

    At most ``max_pending`` blocks wait; beyond that the printer counts what it skipped and
    says so (the messages themselves are in the store and the viewer). ``flush`` waits until
    everything submitted was printed.
    """

    def __init__(
        self, stream: TextIO, *, viewer_url: str | None = None, max_pending: int = 10_000
    ) -> None:
        self.stream = stream
        self.viewer_url = viewer_url
        self._queue: queue.Queue[StoredMessage | None] = queue.Queue(max_pending)
        self._skipped = 0
        self._skipped_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="sink-terminal", daemon=True)
        self._thread.start()

    def submit(self, stored: StoredMessage) -> None:
        """Queue ``stored`` for printing; never blocks."""
        try:
            self._queue.put_nowait(stored)
        except queue.Full:
            with self._skipped_lock:
                self._skipped += 1

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued block is printed; False if ``timeout`` passed first."""
        done = threading.Event()
        waiter = threading.Thread(target=lambda: (self._queue.join(), done.set()), daemon=True)
        waiter.start()
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Print what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            stored = self._queue.get()
            try:
                if stored is None:
                    return
                self._print(stored)
            finally:
                self._queue.task_done()

    def _print(self, stored: StoredMessage) -> None:
        with self._skipped_lock:
            skipped, self._skipped = self._skipped, 0
        text = ""
        if skipped:
            text += f"--- ({skipped} messages not shown here: the terminal fell behind) ---\n"
        try:
            text += format_block(stored, viewer_url=self.viewer_url)
        except Exception as error:
            text += f"--- message {stored.id}: cannot summarise it ({error!r}) ---\n"
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            # The terminal went away (closed pipe); the store and the viewer still work.
            pass


def _decoded(value: object) -> str:
    text = str(value)
    try:
        return str(make_header(decode_header(text)))
    except (ValueError, LookupError, UnicodeError):
        return text


def _clean(text: str) -> str:
    return _UNSAFE.sub("?", text)


def _links(parsed: Message) -> tuple[str, ...]:
    found: list[str] = []
    for part in parsed.walk():
        if part.get_content_maintype() != "text" or part.get_filename():
            continue
        subtype = part.get_content_subtype()
        if subtype not in {"plain", "html"}:
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        charset = part.get_content_charset() or "utf-8"
        try:
            text = payload.decode(charset, "replace")
        except LookupError:
            text = payload.decode("utf-8", "replace")
        if subtype == "html":
            for groups in _HREF.findall(text):
                href = next((group for group in groups if group), "").strip()
                if href.startswith(("http://", "https://")):
                    found.append(html.unescape(href))
        else:
            found.extend(
                match.rstrip(_TRAILING_PUNCTUATION) for match in _URL_IN_TEXT.findall(text)
            )
    return tuple(dict.fromkeys(found))
