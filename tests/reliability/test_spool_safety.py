"""The spool: ownership by file lock (never by pid), private files, unsafe folders refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mailreset import ConfigurationError, MemoryTransport, Spool, ThreadedMailer
from tests.mail_factory import make_envelope


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _pending(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.msg"))


def test_folder_is_made_0700_and_files_0600(tmp_path: Path) -> None:
    """Reset links are secrets: a new spool folder is 0700 and each record 0600."""
    folder = tmp_path / "spool"
    spool = Spool(folder)
    path = spool.write(make_envelope(1))

    assert 0o700 == _mode(folder)
    assert 0o600 == _mode(path)
    assert 0o700 == _mode(folder / "owners")


def test_a_symlinked_folder_is_refused(tmp_path: Path) -> None:
    """A spool path that is a symlink is a ConfigurationError (it may point anywhere)."""
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)

    with pytest.raises(ConfigurationError, match="symlink"):
        ThreadedMailer(MemoryTransport(), spool=link)


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777, 0o1777])
def test_a_group_or_world_writable_folder_is_refused(tmp_path: Path, mode: int) -> None:
    """Anyone who can write the folder could plant mail: refused, with the chmod to run."""
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(mode)

    with pytest.raises(ConfigurationError, match="chmod 700"):
        Spool(folder)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    """A folder that belongs to someone else is refused, even when its mode looks private."""
    folder = tmp_path / "theirs"
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)  # nobody

    with pytest.raises(ConfigurationError, match="belongs to uid 65534"):
        Spool(folder)


def test_same_pid_restart_replays_what_the_dead_owner_left(tmp_path: Path) -> None:
    """Ownership is the lock, not the pid: a new spool in this very process replays it.

    The old owner closing its spool is what a crash does to its lock; the pid stays the same,
    as a container's PID 1 does when it restarts.
    """
    crashed = Spool(tmp_path)
    for number in range(3):
        crashed.write(make_envelope(number))
    crashed.close()
    memory = MemoryTransport()

    mailer = ThreadedMailer(memory, spool=tmp_path)
    mailer.flush(5)
    mailer.close()

    assert ["message 0", "message 1", "message 2"] == [m["Subject"] for m in memory.messages]
    assert [] == _pending(tmp_path)


def test_a_live_owner_in_the_same_process_keeps_its_files(tmp_path: Path) -> None:
    """Two spools in one process: the one holding its lock keeps its files from the other."""
    owner = Spool(tmp_path)
    path = owner.write(make_envelope(1))

    assert [] == list(Spool(tmp_path).leftovers())
    assert path.exists()


def test_records_are_checked_again_on_replay(tmp_path: Path) -> None:
    """A planted symlink or a record others can read is moved to corrupt/, never sent."""
    crashed = Spool(tmp_path)
    good = crashed.write(make_envelope(1))
    loose = crashed.write(make_envelope(2))
    loose.chmod(0o644)
    outside = tmp_path.parent / f"{tmp_path.name}-outside.msg"
    outside.write_bytes(crashed.path.joinpath(good.name).read_bytes())
    outside.chmod(0o600)
    name, _, owner = good.stem.rpartition(".")
    (tmp_path / f"{name}0.{owner}.msg").symlink_to(outside)
    crashed.close()
    memory = MemoryTransport()

    mailer = ThreadedMailer(memory, spool=tmp_path)
    mailer.flush(5)
    mailer.close()

    assert ["message 1"] == [m["Subject"] for m in memory.messages]
    assert 2 == len(list((tmp_path / "corrupt").iterdir()))
    assert outside.exists()


# Python 3.12+ warns about fork() with threads alive; the child only reads the folder.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_leaves_the_parents_files_alone(tmp_path: Path) -> None:
    """After os.fork the child does not inherit ownership: the parent's pending file stays."""
    parent = Spool(tmp_path)
    path = parent.write(make_envelope(1))
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through its exit code
        try:
            claimed = list(Spool(tmp_path).leftovers())
            os._exit(0 if not claimed and path.exists() else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(child, 0)

    assert 0 == os.waitstatus_to_exitcode(status)
    assert path.exists()
