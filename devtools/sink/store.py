"""Where the debug sink keeps messages: an index in memory, large bodies on disk.

:class:`SinkStore` is a :class:`mailreset.testing.CaptureStore` (so the capture core's handler
fills it) that gives every message an id and a :class:`~devtools.sink.summary.Summary` (the
index entry the list, the search and the terminal use), and forgets the oldest once
``max_messages`` are kept. Memory stays bounded whatever arrives: a body up to
``memory_limit`` bytes is kept in memory, a bigger one only in a file (in the ``--store``
folder, or else in a private temporary folder removed at :meth:`SinkStore.close`).

With a ``directory``, every message is written as ``<id>.eml`` plus a ``<id>.json`` sidecar
holding the envelope (which the .eml cannot), and loaded again at start. Files are 0600 (a
reset link is a secret) and a folder the sink makes is 0700. The sink deletes only files it
wrote itself: an ``.eml`` dropped in by hand is listed, and deleting it from the viewer only
forgets it; any other file in the folder is never touched.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import attrs

from devtools.sink.summary import Summary, summarize
from mailreset.testing import CapturedMessage, CaptureStore

__all__ = ["MEMORY_LIMIT", "SinkStore", "StoredMessage"]

#: Bodies up to this many bytes stay in memory; bigger ones live on disk only. A reset mail is
#: a few KiB, and 1000 messages at this size are 64 MiB at most.
MEMORY_LIMIT = 64 * 1024

#: ids are file names and URL path segments: keep them to a safe alphabet.
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
#: The ids the sink makes itself (see _new_id): only files named so can be the sink's.
_SINK_ID = re.compile(r"^[0-9a-f]{16,32}$")
#: Marks a sidecar the sink wrote; a user's own ``<hex>.json`` never carries it.
_WRITTEN_BY = "mailreset sink"
_FILE_MODE = 0o600
_FOLDER_MODE = 0o700


@attrs.frozen(kw_only=True)
class StoredMessage:
    """A captured message as the sink keeps it: its id, its index entry and its body.

    Attributes:
        id: the message's id in URLs and file names.
        summary: the index entry made when it arrived (envelope, From, Subject, links...).
        received_at: when it arrived (aware UTC).
        size: the size of the raw message in bytes.
        path: its ``.eml`` file, or None when it lives in memory only.
        owned: True when the sink wrote ``path`` itself (only then does it delete it).
        raw: the message bytes when they are kept in memory, else None (read from ``path``).
    """

    id: str
    summary: Summary
    received_at: datetime
    size: int
    path: Path | None = None
    owned: bool = True
    raw: bytes | None = attrs.field(default=None, repr=False)

    @property
    def message(self) -> CapturedMessage:
        """The captured message, read from disk when its body is not in memory.

        A fresh object each time: the parse a request makes is freed with it instead of
        staying cached on the store (viewing a large message must not pin its parse tree).
        Raises :class:`OSError` when the body's file is gone.
        """
        raw = self.raw
        if raw is None:
            if self.path is None:  # pragma: no cover - every entry has one or the other
                raise FileNotFoundError(f"message {self.id} has no body")
            raw = self.path.read_bytes()
        return CapturedMessage(
            raw=raw,
            envelope_from=self.summary.sender,
            envelope_to=self.summary.recipients,
            received_at=self.received_at,
        )


class SinkStore(CaptureStore):
    """A thread-safe, bounded index of captured messages, with bodies in memory or on disk.

    ``max_messages`` bounds the index: the oldest message is forgotten (its file stays in a
    ``directory``; in the temporary folder it is deleted). ``directory`` saves every message
    atomically (temporary file, then rename) before it is acknowledged; a write failure
    reaches the SMTP client as an error reply instead of being swallowed. ``memory_limit`` is
    the largest body kept in memory. ``warn`` receives problems met while loading the
    directory. Call :meth:`close` to remove the temporary folder.
    """

    def __init__(
        self,
        *,
        max_messages: int = 1000,
        directory: Path | str | None = None,
        warn: Callable[[str], None] | None = None,
        memory_limit: int = MEMORY_LIMIT,
    ) -> None:
        super().__init__()
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, not {max_messages}")
        self.max_messages = max_messages
        self.memory_limit = memory_limit
        self.directory = None if directory is None else Path(directory)
        self._warn = warn or (lambda text: None)
        #: Called with each :class:`StoredMessage` after it is stored (the terminal printer).
        self.on_stored: list[Callable[[StoredMessage], None]] = []
        self._entries: OrderedDict[str, StoredMessage] = OrderedDict()
        self._cond = threading.Condition()
        self._version = 0
        self._spill: Path | None = None
        self._spill_lock = threading.Lock()
        self._cleanup: weakref.finalize[[str], None] | None = None
        if self.directory is not None:
            _make_private_folder(self.directory)
            self._load()

    # -- the CaptureStore API -------------------------------------------------------------

    def add(self, message: CapturedMessage) -> None:
        """Store ``message`` (on disk first, when it goes there) and wake waiters."""
        self.add_stored(message)

    def add_stored(self, message: CapturedMessage) -> StoredMessage:
        """Store ``message`` like :meth:`add` and return it with its id."""
        message_id = _new_id()
        raw = message.raw
        in_memory = len(raw) <= self.memory_limit
        path = None
        if self.directory is not None:
            path = self._write(message_id, message)
        elif not in_memory:
            path = self._spill_folder() / f"{message_id}.eml"
            _write_atomically(path, raw)
        entry = StoredMessage(
            id=message_id,
            summary=summarize(raw, message.envelope_from, tuple(message.envelope_to)),
            received_at=message.received_at,
            size=len(raw),
            path=path,
            raw=raw if in_memory else None,
        )
        forgotten = []
        with self._cond:
            self._entries[message_id] = entry
            while len(self._entries) > self.max_messages:
                forgotten.append(self._entries.popitem(last=False)[1])
            self._version += 1
            self._cond.notify_all()
        for old in forgotten:
            # A --store folder keeps what it holds; the temporary folder must not grow.
            if old.path is not None and self.directory is None:
                old.path.unlink(missing_ok=True)
        for stored_callback in self.on_stored:
            stored_callback(entry)
        for callback in self.on_message:
            callback(message)
        return entry

    @property
    def messages(self) -> list[CapturedMessage]:
        """A snapshot of the kept messages, oldest first (large bodies read from disk)."""
        with self._cond:
            entries = list(self._entries.values())
        return _readable(entries)

    def __len__(self) -> int:
        with self._cond:
            return len(self._entries)

    def clear(self) -> None:
        """Forget every message and delete the files the sink wrote, and only those."""
        with self._cond:
            doomed = list(self._entries.values())
            self._entries.clear()
            self._version += 1
            self._cond.notify_all()
        for entry in doomed:
            _delete_files(entry)
        if self.directory is not None:
            # Messages the ring forgot keep their files; "delete all" removes those too,
            # recognised by name and by the sidecar the sink wrote, never by extension alone.
            for sidecar in self.directory.glob("*.json"):
                if _SINK_ID.match(sidecar.stem) and _written_by_sink(sidecar):
                    sidecar.with_suffix(".eml").unlink(missing_ok=True)
                    sidecar.unlink(missing_ok=True)

    def remove(self, predicate: Callable[[CapturedMessage], bool]) -> int:
        """Forget (and delete the files of) the messages ``predicate`` selects."""
        with self._cond:
            entries = list(self._entries.values())
        doomed = [entry for entry in entries if _quietly_matches(predicate, entry)]
        return sum(self.delete(entry.id) for entry in doomed)

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[CapturedMessage]:
        """Wait until at least ``count`` messages are kept; return them, oldest first."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._entries) >= count, timeout):
                raise TimeoutError(
                    f"expected {count} message(s) within {timeout}s, got {len(self._entries)}"
                )
            entries = list(self._entries.values())
        return _readable(entries)

    # -- by id, and change notification -------------------------------------------------

    @property
    def version(self) -> int:
        """A number that changes whenever a message is added or deleted."""
        with self._cond:
            return self._version

    def snapshot(self) -> tuple[int, list[StoredMessage]]:
        """The version and the kept messages, newest first, taken together."""
        with self._cond:
            return self._version, list(reversed(self._entries.values()))

    def wait_changed(self, version: int, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for the version to differ from ``version``.

        Returns the version then (the same one when nothing changed in time). Wakes at once
        on a change: the wait endpoint and the live viewer's events answer from here.
        """
        with self._cond:
            self._cond.wait_for(lambda: self._version != version, timeout)
            return self._version

    def entries(self) -> list[StoredMessage]:
        """A snapshot of the kept messages with their ids, newest first."""
        return self.snapshot()[1]

    def get(self, message_id: str) -> StoredMessage | None:
        """The message with ``message_id``, or None."""
        with self._cond:
            return self._entries.get(message_id)

    def delete(self, message_id: str) -> bool:
        """Forget one message (and delete its files if the sink wrote them); False if unknown."""
        with self._cond:
            entry = self._entries.pop(message_id, None)
            if entry is None:
                return False
            self._version += 1
            self._cond.notify_all()
        _delete_files(entry)
        return True

    def close(self) -> None:
        """Remove the temporary folder of large bodies (a ``directory`` is kept)."""
        with self._spill_lock:
            if self._cleanup is not None:
                self._cleanup()

    # -- files ------------------------------------------------------------------------------

    def _spill_folder(self) -> Path:
        with self._spill_lock:
            if self._spill is None:
                # mkdtemp makes the folder 0700, for this user only.
                folder = tempfile.mkdtemp(prefix="mailreset-sink-")
                self._spill = Path(folder)
                # Removed at close(), or when the store is collected or the process exits.
                self._cleanup = weakref.finalize(self, shutil.rmtree, folder, True)
            return self._spill

    def _write(self, message_id: str, message: CapturedMessage) -> Path:
        assert self.directory is not None
        envelope = {
            "envelope_from": message.envelope_from,
            "envelope_to": list(message.envelope_to),
            "received_at": message.received_at.isoformat(),
            "written_by": _WRITTEN_BY,
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
                loaded.append(_read(path, self.memory_limit))
            except (OSError, ValueError, TypeError, KeyError) as error:
                self._warn(f"skipping {path.name}: {error}")
        loaded.sort(key=lambda entry: (entry.received_at, entry.id))
        for entry in loaded[-self.max_messages :]:
            self._entries[entry.id] = entry
        self._version += 1


def _readable(entries: list[StoredMessage]) -> list[CapturedMessage]:
    found = []
    for entry in entries:
        try:
            found.append(entry.message)
        except OSError:
            continue  # its file was deleted behind the sink's back
    return found


def _quietly_matches(predicate: Callable[[CapturedMessage], bool], entry: StoredMessage) -> bool:
    try:
        return predicate(entry.message)
    except OSError:
        return False


def _delete_files(entry: StoredMessage) -> None:
    if entry.path is None or not entry.owned:
        return
    entry.path.unlink(missing_ok=True)
    entry.path.with_suffix(".json").unlink(missing_ok=True)


def _written_by_sink(sidecar: Path) -> bool:
    try:
        envelope = json.loads(sidecar.read_text("utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(envelope, dict):
        return False
    # Sidecars from before the marker hold exactly these three keys.
    legacy = {"envelope_from", "envelope_to", "received_at"}
    return envelope.get("written_by") == _WRITTEN_BY or set(envelope) == legacy


def _read(path: Path, memory_limit: int) -> StoredMessage:
    raw = path.read_bytes()
    sidecar = path.with_suffix(".json")
    owned = False
    if sidecar.exists():
        envelope = json.loads(sidecar.read_text("utf-8"))
        owned = _SINK_ID.match(path.stem) is not None and _written_by_sink(sidecar)
        message = CapturedMessage.from_bytes(
            raw,
            envelope_from=str(envelope["envelope_from"]),
            envelope_to=[str(address) for address in envelope["envelope_to"]],
            received_at=datetime.fromisoformat(envelope["received_at"]),
        )
    else:
        # A .eml dropped in by hand: the envelope comes from its headers.
        mtime = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
        message = CapturedMessage.from_bytes(raw, received_at=mtime)
    return StoredMessage(
        id=path.stem,
        summary=summarize(raw, message.envelope_from, message.envelope_to),
        received_at=message.received_at,
        size=len(raw),
        path=path,
        owned=owned,
        raw=raw if len(raw) <= memory_limit else None,
    )


def _make_private_folder(folder: Path) -> None:
    if folder.is_dir():
        return  # the user's own folder: its mode is the user's choice
    folder.mkdir(parents=True, mode=_FOLDER_MODE)
    os.chmod(folder, _FOLDER_MODE)  # mkdir's mode is filtered by the umask


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        # 0600 from the start, never readable by others even for a moment.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        with open(descriptor, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


_counter = 0
_counter_lock = threading.Lock()


def _new_id() -> str:
    # Hex, sortable by arrival (time, then a counter) and unguessable enough for a dev tool.
    global _counter  # noqa: PLW0603 - a process-wide sequence
    with _counter_lock:
        _counter = (_counter + 1) % 0x10000
        sequence = _counter
    return f"{time.time_ns() // 1000:x}{sequence:04x}{secrets.token_hex(2)}"
