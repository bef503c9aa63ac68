"""Where the debug sink keeps messages: a bounded in-memory ring, optionally mirrored to disk.

:class:`SinkStore` is a :class:`mailreset.testing.CaptureStore` (so the capture core's handler
fills it) that gives every message an id, forgets the oldest once ``max_messages`` are kept,
and with a ``directory`` writes each message as ``<id>.eml`` (plus a ``<id>.json`` sidecar
holding the envelope, which the .eml cannot) and loads them again at start.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import attrs

from mailreset.testing import CapturedMessage, CaptureStore

__all__ = ["SinkStore", "StoredMessage"]

#: ids are file names and URL path segments: keep them to a safe alphabet.
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


@attrs.frozen(kw_only=True)
class StoredMessage:
    """A captured message and the id the sink gave it.

    Attributes:
        id: the message's id in URLs and file names.
        message: the captured message (parsed lazily).
        path: its ``.eml`` file when the store has a directory, else None.
    """

    id: str
    message: CapturedMessage
    path: Path | None = None


class SinkStore(CaptureStore):
    """A thread-safe, bounded ring of captured messages with ids, optionally saved to disk.

    ``max_messages`` bounds memory: the oldest message is forgotten (its file stays on disk).
    ``directory`` saves every message atomically (temporary file, then rename) before it is
    acknowledged; a write failure reaches the SMTP client as an error reply instead of being
    swallowed. ``warn`` receives problems met while loading the directory.
    """

    def __init__(
        self,
        *,
        max_messages: int = 1000,
        directory: Path | str | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, not {max_messages}")
        self.max_messages = max_messages
        self.directory = None if directory is None else Path(directory)
        self._warn = warn or (lambda text: None)
        #: Called with each :class:`StoredMessage` after it is stored (the terminal printer).
        self.on_stored: list[Callable[[StoredMessage], None]] = []
        self._entries: OrderedDict[str, StoredMessage] = OrderedDict()
        self._cond = threading.Condition()
        self._version = 0
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._load()

    # -- the CaptureStore API -------------------------------------------------------------

    def add(self, message: CapturedMessage) -> None:
        """Store ``message`` (on disk first, when there is a directory) and wake waiters."""
        self.add_stored(message)

    def add_stored(self, message: CapturedMessage) -> StoredMessage:
        """Store ``message`` like :meth:`add` and return it with its id."""
        message_id = _new_id()
        path = None
        if self.directory is not None:
            path = self._write(message_id, message)
        entry = StoredMessage(id=message_id, message=message, path=path)
        with self._cond:
            self._entries[message_id] = entry
            while len(self._entries) > self.max_messages:
                self._entries.popitem(last=False)
            self._version += 1
            self._cond.notify_all()
        for stored_callback in self.on_stored:
            stored_callback(entry)
        for callback in self.on_message:
            callback(message)
        return entry

    @property
    def messages(self) -> list[CapturedMessage]:
        """A snapshot of the kept messages, oldest first."""
        with self._cond:
            return [entry.message for entry in self._entries.values()]

    def __len__(self) -> int:
        with self._cond:
            return len(self._entries)

    def clear(self) -> None:
        """Forget every message, and delete their files when there is a directory."""
        with self._cond:
            self._entries.clear()
            self._version += 1
        if self.directory is not None:
            for pattern in ("*.eml", "*.json"):
                for path in self.directory.glob(pattern):
                    path.unlink(missing_ok=True)

    def remove(self, predicate: Callable[[CapturedMessage], bool]) -> int:
        """Forget (and delete the files of) the messages ``predicate`` selects."""
        with self._cond:
            doomed = [entry for entry in self._entries.values() if predicate(entry.message)]
        return sum(self.delete(entry.id) for entry in doomed)

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[CapturedMessage]:
        """Wait until at least ``count`` messages are kept; return them, oldest first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._entries) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"expected {count} message(s) within {timeout}s, got {len(self._entries)}"
                    )
                self._cond.wait(left)
            return [entry.message for entry in self._entries.values()]

    # -- by id ----------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """A number that changes whenever a message is added or deleted."""
        with self._cond:
            return self._version

    def entries(self) -> list[StoredMessage]:
        """A snapshot of the kept messages with their ids, newest first."""
        with self._cond:
            return list(reversed(self._entries.values()))

    def get(self, message_id: str) -> StoredMessage | None:
        """The message with ``message_id``, or None."""
        with self._cond:
            return self._entries.get(message_id)

    def delete(self, message_id: str) -> bool:
        """Forget one message (and delete its files); False when the id is unknown."""
        with self._cond:
            entry = self._entries.pop(message_id, None)
            if entry is None:
                return False
            self._version += 1
        if entry.path is not None:
            entry.path.unlink(missing_ok=True)
            entry.path.with_suffix(".json").unlink(missing_ok=True)
        return True

    # -- the directory --------------------------------------------------------------------

    def _write(self, message_id: str, message: CapturedMessage) -> Path:
        assert self.directory is not None
        envelope = {
            "envelope_from": message.envelope_from,
            "envelope_to": list(message.envelope_to),
            "received_at": message.received_at.isoformat(),
        }
        # The sidecar first: the .eml appearing is what makes the message "stored".
        _write_atomically(
            self.directory / f"{message_id}.json", json.dumps(envelope).encode("utf-8")
        )
        path = self.directory / f"{message_id}.eml"
        _write_atomically(path, message.raw)
        return path

    def _load(self) -> None:
        assert self.directory is not None
        loaded: list[StoredMessage] = []
        for path in self.directory.glob("*.eml"):
            if path.name.startswith(".") or not _SAFE_ID.match(path.stem):
                self._warn(f"skipping {path.name}: not a name the sink writes")
                continue
            try:
                loaded.append(_read(path))
            except (OSError, ValueError, TypeError, KeyError) as error:
                self._warn(f"skipping {path.name}: {error}")
        loaded.sort(key=lambda entry: (entry.message.received_at, entry.id))
        for entry in loaded[-self.max_messages :]:
            self._entries[entry.id] = entry
        self._version += 1


def _read(path: Path) -> StoredMessage:
    raw = path.read_bytes()
    sidecar = path.with_suffix(".json")
    if sidecar.exists():
        envelope = json.loads(sidecar.read_text("utf-8"))
        received_at = datetime.fromisoformat(envelope["received_at"])
        message = CapturedMessage.from_bytes(
            raw,
            envelope_from=str(envelope["envelope_from"]),
            envelope_to=[str(address) for address in envelope["envelope_to"]],
            received_at=received_at,
        )
    else:
        # A .eml dropped in by hand: the envelope comes from its headers.
        mtime = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
        message = CapturedMessage.from_bytes(raw, received_at=mtime)
    return StoredMessage(id=path.stem, message=message, path=path)


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


_counter = 0
_counter_lock = threading.Lock()


def _new_id() -> str:
    # Sortable by arrival (time, then a counter) and unguessable enough for a dev tool.
    global _counter  # noqa: PLW0603 - a process-wide sequence
    with _counter_lock:
        _counter = (_counter + 1) % 0x10000
        sequence = _counter
    return f"{time.time_ns() // 1000:x}{sequence:04x}{secrets.token_hex(2)}"
