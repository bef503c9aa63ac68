"""The spool: on disk before send returns, gone once accepted, replayed after a crash."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest

from mailreset import (
    ConfigurationError,
    InvalidMessage,
    MemoryTransport,
    PermanentFailure,
    Spool,
    ThreadedMailer,
)
from mailreset.testing import FaultPlan, SMTPSink
from tests.mail_factory import make_envelope, make_message
from tests.test_mailers import Gate

ROOT = Path(__file__).resolve().parent.parent


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _as_left_by(spool: Spool, number: int, pid: int) -> Path:
    """A spool file as an owner that is gone (nobody holds its lock) would have left it.

    The owner's name is the pid of a finished process here, only to tell owners apart:
    ownership is decided by the owner's lock, which nobody holds for that name.
    """
    path = spool.write(make_envelope(number, bcc="hidden@example.com"))
    name, _, _owner = path.stem.rpartition(".")
    orphan = path.with_name(f"{name}.{pid}{path.suffix}")
    path.rename(orphan)
    return orphan


def _messages(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.msg"))


def test_message_is_on_disk_before_send_returns_and_gone_after(tmp_path: Path) -> None:
    """send() returns with the file in place; acceptance removes it."""
    gate = Gate()
    mailer = ThreadedMailer(gate, spool=tmp_path)
    future = mailer.send(make_message(1))
    on_disk = [path.read_bytes() for path in _messages(tmp_path)]
    gate.opened.set()
    future.result(5)
    mailer.close()

    assert 1 == len(on_disk)
    assert b"message 1" in on_disk[0]
    assert [] == _messages(tmp_path)


def test_leftovers_are_sent_on_start_with_their_envelope(tmp_path: Path) -> None:
    """Files a dead process left are delivered by a new mailer, Bcc recipient included."""
    spool = Spool(tmp_path)
    pid = _dead_pid()
    for number in range(3):
        _as_left_by(spool, number, pid)
    memory = MemoryTransport()

    mailer = ThreadedMailer(memory, spool=tmp_path)
    mailer.flush(5)
    mailer.close()

    assert ["message 0", "message 1", "message 2"] == [m["Subject"] for m in memory.messages]
    assert ("user@example.com", "hidden@example.com") == memory.envelopes[0].recipients
    assert [] == _messages(tmp_path)


def test_leftovers_reach_a_custom_transport_with_bcc(tmp_path: Path) -> None:
    """A Transport of the user's gets the replayed envelope, the Bcc recipient in it."""
    spool = Spool(tmp_path)
    _as_left_by(spool, 7, _dead_pid())
    gate = Gate()
    gate.opened.set()

    mailer = ThreadedMailer(gate, spool=spool)
    mailer.flush(5)
    mailer.close()

    [sent] = gate.memory.envelopes
    assert ("user@example.com", "hidden@example.com") == sent.recipients
    assert b"hidden@example.com" not in sent.data


HOLDER = """
import sys
from mailreset import Spool
from tests.mail_factory import make_envelope

print(Spool(sys.argv[1]).write(make_envelope(1)), flush=True)
sys.stdin.read()  # hold the spool (and its lock) until the test kills us
"""


def test_files_of_live_processes_are_left_alone(tmp_path: Path) -> None:
    """Another live process's pending file is its own business; once it is killed, ours."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    path = Path(holder.stdout.readline().strip())
    memory = MemoryTransport()

    mailer = ThreadedMailer(memory, spool=tmp_path)
    mailer.flush(5)
    mailer.close()
    assert [] == memory.messages
    assert path.exists()

    holder.send_signal(signal.SIGKILL)
    holder.wait(10)
    for stream in (holder.stdin, holder.stdout):
        assert stream is not None
        stream.close()
    mailer = ThreadedMailer(memory, spool=tmp_path)
    mailer.flush(5)
    mailer.close()
    assert ["message 1"] == [m["Subject"] for m in memory.messages]
    assert [] == _messages(tmp_path)


def test_damaged_files_are_moved_aside_and_never_stop_the_mailer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A truncated or foreign file goes to corrupt/ with a warning; the rest is delivered."""
    spool = Spool(tmp_path)
    pid = _dead_pid()
    good = _as_left_by(spool, 1, pid)
    truncated = _as_left_by(spool, 2, pid)
    truncated.write_bytes(truncated.read_bytes()[:-10])
    (tmp_path / f"00000000000000000000-garbage.{pid}.msg").write_bytes(b"not a spool file")
    (tmp_path / f"00000000000000000001-half.{pid}.tmp").write_bytes(b"MAILRESET-SPOOL 1 ")
    memory = MemoryTransport()

    mailer = ThreadedMailer(memory, spool=spool)
    mailer.flush(5)
    mailer.close()

    assert ["message 1"] == [m["Subject"] for m in memory.messages]
    assert 2 == len(list((tmp_path / "corrupt").iterdir()))
    assert [] == list(tmp_path.glob("*.tmp"))
    assert not good.exists()
    assert "damaged" in caplog.text


def _record(sender: str, recipients: list[str], data: bytes) -> bytes:
    """A spool file with an intact checksum around whatever envelope fields it is given."""
    header = json.dumps({"sender": sender, "recipients": recipients}).encode()
    check = zlib.crc32(data, zlib.crc32(header))
    return b"MAILRESET-SPOOL 1 %d %d %d\n%s\n%s" % (len(header), len(data), check, header, data)


@pytest.mark.parametrize(
    ("sender", "recipients"),
    [
        ("app@example.com", ["user@example.com>\r\nRCPT TO:<victim@evil.test"]),
        ("app@example.com", []),
        ("not an address", ["user@example.com"]),
    ],
)
def test_a_record_read_back_is_checked_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, sender: str, recipients: list[str]
) -> None:
    """A spool file that is intact but holds an envelope no mailer would make is set aside
    as corrupt, never sent: it passes the checks every Envelope passes."""
    spool = Spool(tmp_path)
    pid = _dead_pid()
    forged = tmp_path / f"00000000000000000000-forged.{pid}.msg"
    forged.write_bytes(_record(sender, recipients, b"Subject: forged\r\n\r\nx\r\n"))
    forged.chmod(0o600)  # private like every spool file: only its envelope is wrong
    memory = MemoryTransport()

    mailer = ThreadedMailer(memory, spool=spool)
    mailer.flush(5)
    mailer.close()

    assert [] == memory.envelopes
    assert 1 == len(list((tmp_path / "corrupt").iterdir()))
    assert "damaged" in caplog.text


def test_permanently_failed_messages_are_set_aside(tmp_path: Path) -> None:
    """A message that finally failed leaves the spool for failed/, so it is not replayed."""
    memory = MemoryTransport()
    memory.fail_next(PermanentFailure("550 no"))
    mailer = ThreadedMailer(memory, spool=tmp_path)

    mailer.send(make_message(1)).exception(5)
    mailer.close()

    assert [] == _messages(tmp_path)
    assert 1 == len(list((tmp_path / "failed").iterdir()))


def test_invalid_message_raises_from_send_with_a_spool(tmp_path: Path) -> None:
    """With a spool the message is serialised in send(), so an invalid one raises there."""
    mailer = ThreadedMailer(MemoryTransport(), spool=tmp_path)
    message = make_message(1)
    del message["From"]

    with pytest.raises(InvalidMessage):
        mailer.send(message)
    mailer.close()
    assert [] == _messages(tmp_path)


def test_unwritable_spool_is_a_configuration_error(tmp_path: Path) -> None:
    """A spool path that is a file is refused when the mailer is made."""
    target = tmp_path / "file"
    target.write_text("x")

    with pytest.raises(ConfigurationError, match="spool"):
        ThreadedMailer(MemoryTransport(), spool=target / "sub")


CHILD = """
import sys
from mailreset import SMTPSettings, ThreadedMailer, Retry
from tests.mail_factory import make_envelope, make_message

port, spool, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
mailer = ThreadedMailer(SMTPSettings(host="127.0.0.1", port=port), spool=spool, workers=1)
for number in range(count):
    mailer.send(make_message(number))
    print(number, flush=True)
mailer.close()
"""


@pytest.mark.slow
def test_sigkill_mid_stream_then_a_new_mailer_delivers_the_rest(tmp_path: Path) -> None:
    """A process killed with SIGKILL mid-stream: a new mailer on its spool sends the rest."""
    count, kill_after = 300, 150
    with SMTPSink(faults=FaultPlan(delay=0.002)) as sink:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(sink.port), str(tmp_path), str(count)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        returned = -1
        for line in child.stdout:
            returned = int(line)
            if returned >= kill_after:
                break
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        child.stdout.close()
        at_kill = len(sink.messages)
        left = len(_messages(tmp_path))

        mailer = ThreadedMailer(sink.settings, spool=tmp_path)
        mailer.flush(30)
        mailer.close()

        expected = {f"message {number}" for number in range(returned + 1)}
        arrived = {message.subject for message in sink.messages}
    assert expected <= arrived
    assert 0 < left
    assert at_kill < count
    assert [] == _messages(tmp_path)


def test_concurrent_replays_claim_each_file_once(tmp_path: Path) -> None:
    """Two mailers starting on one spool deliver each leftover exactly once between them."""
    spool = Spool(tmp_path)
    pid = _dead_pid()
    for number in range(40):
        _as_left_by(spool, number, pid)
    memories = [MemoryTransport(), MemoryTransport()]
    barrier = threading.Barrier(2)
    mailers: list[ThreadedMailer] = []

    def start(memory: MemoryTransport) -> None:
        barrier.wait()
        mailers.append(ThreadedMailer(memory, spool=tmp_path))

    threads = [threading.Thread(target=start, args=(memory,)) for memory in memories]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    for mailer in mailers:
        mailer.flush(5)
        mailer.close()

    subjects = [m["Subject"] for memory in memories for m in memory.messages]
    assert 40 == len(subjects)
    assert 40 == len(set(subjects))
