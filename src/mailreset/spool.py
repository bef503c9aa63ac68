"""A durable on-disk outbox: what ``ThreadedMailer(spool=...)`` writes before ``send`` returns.

Each message is one file, written to a temporary name, fsynced, renamed into place and the
directory fsynced, so a file under its final name is always complete. The file is removed once
the server accepted the message; a mailer started later on the same folder sends what is left.
Delivery is at least once: a crash between the server's acceptance and the removal sends the
message again.

Who owns a file is decided by a file lock, never by process ids (a container's PID 1 that
crashes restarts as PID 1): each spool in each process picks a random owner name, holds an
exclusive ``flock`` on ``owners/<name>.lock`` for as long as it lives, and writes that name
into its file names. The kernel drops the lock when the process dies, however it dies, so a
file whose owner's lock can be taken was left behind. Mailers in several processes (a
pre-forking web server) can share one folder: a process replays only such files, and claims
each by renaming it to its own name first, so two processes never replay the same file.

Reset links are secrets: the folder is made 0700 and every file 0600, and a folder that is a
symlink, belongs to another user, or is writable by group or others is refused. Files are
checked again when replayed (a regular file of ours, private), as is the message in them.

.. versionadded:: 0.1
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import secrets
import stat
import threading
import time
import weakref
import zlib
from collections.abc import Iterator
from pathlib import Path

import attrs

from mailreset._envelope import Envelope
from mailreset._forks import forks
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
#: Folder (inside the spool) for the owners' lock files.
OWNERS = "owners"
_PRIVATE_DIR = 0o700
_PRIVATE_FILE = 0o600

# Lock descriptors this process holds; a forked child closes its copies (the locks stay the
# parent's) and takes its own owner name when it first writes.
_held: set[int] = set()


# Every Spool of this process: a child gives each a fresh owner lock (the parent's may have
# been held by one of its threads at the moment of the fork, and would never be released).
_spools: weakref.WeakSet[Spool] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for descriptor in _held:
        with contextlib.suppress(OSError):
            os.close(descriptor)
    _held.clear()
    for spool in list(_spools):
        spool._owner_lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


@attrs.frozen
class SpooledMessage:
    """A message read back from the spool.

    Attributes:
        path: the file holding it (claimed by this process).
        envelope: the message, checked again as it was read back.
    """

    path: Path
    envelope: Envelope


def _check_folder(path: Path, what: str) -> None:
    """Refuse a folder that someone else could read from or plant files in."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise ConfigurationError(f"{what}={str(path)!r} is a symlink; give the real folder")
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigurationError(f"{what}={str(path)!r} is not a folder")
    if info.st_uid != os.geteuid():
        raise ConfigurationError(
            f"{what}={str(path)!r} belongs to uid {info.st_uid}, not to this process's user "
            f"({os.geteuid()}); spooled mail holds reset links, so the folder must be ours"
        )
    if info.st_mode & 0o022:
        raise ConfigurationError(
            f"{what}={str(path)!r} is writable by group or others (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); run `chmod 700 {path}`"
        )


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding an exclusive lock on ``path``, or None when it is held."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _PRIVATE_FILE)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(descriptor)
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return descriptor


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
        self._owner_lock = threading.Lock()
        self._owner: tuple[int, str, int] | None = None  # (fork generation, name, descriptor)
        _spools.add(self)
        try:
            self.path.mkdir(mode=_PRIVATE_DIR, parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigurationError(
                f"spool={str(path)!r} is not a writable folder: {error}"
            ) from error
        _check_folder(self.path, "spool")
        try:
            (self.path / OWNERS).mkdir(mode=_PRIVATE_DIR, exist_ok=True)
            _check_folder(self.path / OWNERS, "spool owners folder")
            probe = self.path / f".probe-{secrets.token_hex(6)}"
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE_FILE))
            probe.unlink()
        except OSError as error:
            raise ConfigurationError(
                f"spool={str(path)!r} is not a writable folder: {error}"
            ) from error

    def _owner_name(self) -> str:
        """This spool's owner name in this process, its lock taken on first use."""
        owner = self._owner
        if owner is not None and owner[0] == forks[0]:
            return owner[1]
        with self._owner_lock:
            owner = self._owner
            if owner is None or owner[0] != forks[0]:
                name = secrets.token_hex(8)
                descriptor = _try_lock(self.path / OWNERS / f"{name}.lock")
                if descriptor is None:  # pragma: no cover - 64 random bits collided
                    raise OSError(f"spool owner name {name} is taken")
                _held.add(descriptor)
                owner = self._owner = (forks[0], name, descriptor)
            return owner[1]

    def __repr__(self) -> str:
        return f"<Spool {str(self.path)!r}>"

    def close(self) -> None:
        """Give up ownership: what this spool still holds may be replayed by the next one.

        Writing again takes a new owner name (and lock).
        """
        with self._owner_lock:
            owner, self._owner = self._owner, None
            if owner is None or owner[0] != forks[0]:
                return
            _held.discard(owner[2])
            os.close(owner[2])

    def write(self, envelope: Envelope) -> Path:
        """Store ``envelope`` durably; return its file. Raises OSError when the disk fails."""
        name = f"{time.time_ns():020d}-{secrets.token_hex(6)}.{self._owner_name()}"
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
            descriptor = os.open(
                temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _PRIVATE_FILE
            )
            with open(descriptor, "wb") as file:
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
            target_dir.mkdir(mode=_PRIVATE_DIR, exist_ok=True)
            target = target_dir / path.name
            os.replace(path, target)
        except OSError as error:
            log.warning("could not move spool file %s aside: %s", path.name, error)
            return None
        return target

    def read(self, path: Path) -> Envelope:
        """Read one spool file back, checked again as :class:`Envelope` checks every envelope.

        Raises ValueError (:class:`~mailreset.errors.InvalidMessage` among them) when it is
        damaged, unsafe (not a private regular file of this user) or holds what must not be
        sent.
        """
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise ValueError("not a regular file of this user (a symlink, or planted)")
        if info.st_mode & 0o077:
            raise ValueError(f"readable or writable by others (mode {info.st_mode & 0o777:o})")
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
        """Claim and yield what owners that are gone left behind, oldest first.

        An owner is gone when its lock can be taken (its process died, or closed the spool).
        Damaged or unsafe files are moved to ``corrupt/`` and logged; they never stop the
        replay.
        """
        me = self._owner_name()
        gone: dict[str, int | None] = {}  # owner name -> the lock we took (None: still alive)
        try:
            for path in sorted(self.path.iterdir()):
                stem, suffix = path.stem, path.suffix
                if suffix not in (_SUFFIX, _TMP_SUFFIX):
                    continue
                name, _, owner = stem.rpartition(".")
                if not owner or owner == me or not name:
                    continue
                if owner not in gone:
                    gone[owner] = _try_lock(self.path / OWNERS / f"{owner}.lock")
                if gone[owner] is None:
                    continue  # its owner lives: the file is its business
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
        finally:
            for owner, descriptor in gone.items():
                if descriptor is not None:
                    # Everything of that owner is claimed: its lock file is litter now.
                    self.remove(self.path / OWNERS / f"{owner}.lock")
                    os.close(descriptor)
