"""The block the debug sink prints per message: time, from, to, subject and the links.

The block is made for a developer who wants to click the reset link straight from the
terminal, so every link sits alone on its line. Printing happens in a thread of its own: a
terminal that is slow or paused never holds up the SMTP server. Header text is cleaned of
control characters, so a message cannot send escape sequences to the developer's terminal.

The fields come from the message's :class:`~devtools.sink.summary.Summary`, made once when it
arrived, so printing parses nothing.
"""

from __future__ import annotations

import queue
import re
import threading
from typing import TextIO

from devtools.sink.store import StoredMessage

__all__ = ["TerminalPrinter", "format_block"]

# C0/C1 controls, bidi overrides and zero-width characters: never echoed to a terminal.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
MAX_LINKS = 10
COALESCE_SECONDS = 0.02


def format_block(stored: StoredMessage, *, viewer_url: str | None = None) -> str:
    """The terminal block for ``stored``: a header line, then one field per line."""
    summary = stored.summary
    when = stored.received_at.astimezone().strftime("%H:%M:%S")
    lines = [f"--- {when}  message {stored.id}  ({stored.size} bytes) ---"]
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
        self._hurry = threading.Event()
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
        self._hurry.set()
        tasks = self._queue
        with tasks.all_tasks_done:
            return tasks.all_tasks_done.wait_for(lambda: not tasks.unfinished_tasks, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Print what is queued, then stop the thread."""
        self._queue.put(None)
        self._hurry.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            # Take everything waiting and write it at once: one write and one wake-up per
            # burst instead of per message keeps the printer off the SMTP server's back.
            batch = [self._queue.get()]
            if batch[-1] is not None:
                # Let a burst gather for a moment: a person cannot tell 20 ms, and waking
                # once per burst instead of once per message halves the printer's cost.
                self._hurry.wait(COALESCE_SECONDS)
                self._hurry.clear()
            while batch[-1] is not None and len(batch) < 1000:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._print([stored for stored in batch if stored is not None])
            finally:
                for _ in batch:
                    self._queue.task_done()
            if batch[-1] is None:
                return

    def _print(self, batch: list[StoredMessage]) -> None:
        with self._skipped_lock:
            skipped, self._skipped = self._skipped, 0
        blocks = []
        if skipped:
            blocks.append(
                f"--- ({skipped} messages not shown here: the terminal fell behind) ---\n"
            )
        for stored in batch:
            try:
                blocks.append(format_block(stored, viewer_url=self.viewer_url))
            except Exception as error:
                blocks.append(f"--- message {stored.id}: cannot summarise it ({error!r}) ---\n")
        if not blocks:
            return
        try:
            self.stream.write("".join(blocks))
            self.stream.flush()
        except (OSError, ValueError):
            # The terminal went away (closed pipe); the store and the viewer still work.
            pass


def _clean(text: str) -> str:
    return _UNSAFE.sub("?", text)
