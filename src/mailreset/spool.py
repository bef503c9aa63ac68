"""A durable on-disk outbox: what ``ThreadedMailer(spool=...)`` writes before ``send`` returns.

Each message is one file, written to a temporary name, fsynced, renamed into place and the
directory fsynced, so a file under its final name is always complete. The file is removed once
the server accepted the message; a mailer started later on the same folder sends what is left.
Delivery is at least once: a crash between the server's acceptance and the removal sends the
message again.

File names carry the writing process's id, so mailers in several processes (a pre-forking web
server) can share one folder: a process only replays files whose writer is gone, and claims
each by renaming it first, so two processes never replay the same file.

.. versionadded:: 0.1
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import attrs

from mailreset._envelope import Envelope
from mailreset.errors import ConfigurationError

__all__ = ["Spool"]

log = logging.getLogger("mailreset")

_MAGIC = b"MAILRESET-SPOOL 1"
_SUFFIX = ".msg"
_TMP_SUFFIX = ".tmp"
#: Folder (inside the spool) for files that could not be read.
CORRUPT = "corrupt"
#: Folder (inside the spool) for messages that failed for good.
FAILED = "failed"


@attrs.frozen
class SpooledMessage:
    """A message read back from the spool.

    Attributes:
        path: the file holding it (claimed by this process).
        envelope: the message, checked again as it was read back.
    """

    path: Path
    envelope: Envelope


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except OSError:
        return False
    return True


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on Windows.
    with contextlib.suppress(OSError):
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


class Spool:
    """A folder of messages waiting for delivery, one atomically written file each.

    Args:
        path: the folder; created (with parents) when missing.
        fsync: False skips the fsync calls (faster, but a power cut can lose messages).

    .. versionadded:: 0.1
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".probe-{os.getpid()}-{secrets.token_hex(4)}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise ConfigurationError(
                f"spool={str(path)!r} is not a writable folder: {error}"
            ) from error

    def __repr__(self) -> str:
        return f"<Spool {str(self.path)!r}>"

    def write(self, envelope: Envelope) -> Path:
        """Store ``envelope`` durably; return its file. Raises OSError when the disk fails."""
        name = f"{time.time_ns():020d}-{secrets.token_hex(6)}.{os.getpid()}"
        final = self.path / f"{name}{_SUFFIX}"
        temporary = self.path / f"{name}{_TMP_SUFFIX}"
        header = json.dumps(
            {
                "sender": envelope.sender,
                "recipients": list(envelope.recipients),
                "message_id": envelope.message_id,
                "smtputf8": envelope.smtputf8,
            }
        ).encode("utf-8")
        check = zlib.crc32(envelope.data, zlib.crc32(header))
        first = b"%s %d %d %d\n" % (_MAGIC, len(header), len(envelope.data), check)
        try:
            with open(temporary, "wb") as file:
                file.write(first + header + b"\n" + envelope.data)
                if self.fsync:
                    file.flush()
                    os.fsync(file.fileno())
            os.replace(temporary, final)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
        if self.fsync:
            _fsync_dir(self.path)
        return final

    def remove(self, path: Path) -> None:
        """Forget a delivered message (a missing file is fine)."""
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def set_aside(self, path: Path, folder: str = FAILED) -> Path | None:
        """Move ``path`` into the ``folder`` sub-folder, where it is never replayed."""
        target_dir = self.path / folder
        try:
            target_dir.mkdir(exist_ok=True)
            target = target_dir / path.name
            os.replace(path, target)
        except OSError as error:
            log.warning("could not move spool file %s aside: %s", path.name, error)
            return None
        return target

    def read(self, path: Path) -> Envelope:
        """Read one spool file back, checked again as :class:`Envelope` checks every envelope.

        Raises ValueError (:class:`~mailreset.errors.InvalidMessage` among them) when it is
        damaged or holds what must not be sent.
        """
        raw = path.read_bytes()
        first, _, rest = raw.partition(b"\n")
        parts = first.split(b" ")
        if len(parts) != 5 or b" ".join(parts[:2]) != _MAGIC:
            raise ValueError("not a mailreset spool file")
        header_size, data_size, check = (int(part) for part in parts[2:])
        header, data = rest[:header_size], rest[header_size + 1 :]
        if len(data) != data_size or zlib.crc32(data, zlib.crc32(header)) != check:
            raise ValueError("truncated or damaged")
        fields = json.loads(header)
        if not isinstance(fields, dict) or not isinstance(fields.get("recipients"), list):
            raise ValueError("the spool file's header is not a mailreset envelope")
        return Envelope(
            sender=fields["sender"],
            recipients=fields["recipients"],
            data=data,
            # Files written before Envelope.message_id could be None hold "" for none.
            message_id=fields.get("message_id") or None,
            smtputf8=fields.get("smtputf8", False) is True,
        )

    def leftovers(self) -> Iterator[SpooledMessage]:
        """Claim and yield what processes that are gone left behind, oldest first.

        Damaged files are moved to ``corrupt/`` and logged; they never stop the replay.
        """
        me = os.getpid()
        for path in sorted(self.path.iterdir()):
            stem, suffix = path.stem, path.suffix
            if suffix not in (_SUFFIX, _TMP_SUFFIX) or not path.is_file():
                continue
            name, _, owner = stem.rpartition(".")
            if not owner.isdigit() or int(owner) == me or _pid_alive(int(owner)):
                continue
            if suffix == _TMP_SUFFIX:
                # A write that never finished: its send() never returned, nothing promised.
                self.remove(path)
                continue
            claimed = self.path / f"{name}.{me}{_SUFFIX}"
            try:
                os.replace(path, claimed)
            except FileNotFoundError:  # another process claimed it first
                continue
            try:
                envelope = self.read(claimed)
            except (ValueError, KeyError, TypeError, OSError) as error:
                moved = self.set_aside(claimed, CORRUPT)
                log.warning(
                    "spool file %s is damaged (%s); moved to %s",
                    path.name,
                    error,
                    moved if moved is not None else "nowhere",
                )
                continue
            yield SpooledMessage(claimed, envelope)
