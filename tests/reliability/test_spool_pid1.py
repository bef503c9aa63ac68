"""SIGKILL mid-burst, restarted as the same PID: a PID namespace makes both runs PID 1.

A container's only process is PID 1; when it crashes and restarts it is PID 1 again. Spool
ownership by process id would take the dead run's files for its own and never send them;
ownership by file lock sends them all.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mailreset.testing import FaultPlan, SMTPSink
from tests.browser_support import in_ci

ROOT = Path(__file__).resolve().parent.parent.parent

SENDER = """
import os, sys
from mailreset import SMTPSettings, ThreadedMailer
from tests.mail_factory import make_message

port, spool, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
print("pid", os.getpid(), flush=True)
mailer = ThreadedMailer(SMTPSettings(host="127.0.0.1", port=port), spool=spool, workers=2)
for number in range(count):
    mailer.send(make_message(number))
    print(number, flush=True)
mailer.close(60)
"""

REPLAYER = """
import os, sys
from mailreset import SMTPSettings, ThreadedMailer

port, spool = int(sys.argv[1]), sys.argv[2]
print("pid", os.getpid(), flush=True)
mailer = ThreadedMailer(SMTPSettings(host="127.0.0.1", port=port), spool=spool)
mailer.flush(60)
mailer.close(60)
"""


def _pid_namespaces() -> str | None:
    """Why PID namespaces cannot be made here, or None."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return "needs util-linux's unshare (apt-get install util-linux)"
    probe = subprocess.run(
        [unshare, "--pid", "--fork", "--kill-child", "true"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        return f"unshare --pid needs root (or CAP_SYS_ADMIN): {probe.stderr.decode()[:200]}"
    return None


@pytest.fixture
def as_pid_1() -> list[str]:
    """The command prefix that runs a program as PID 1 of a new PID namespace."""
    reason = _pid_namespaces()
    if reason is not None:
        if in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    # --kill-child: when unshare is SIGKILLed, the kernel SIGKILLs its PID 1 too.
    return [shutil.which("unshare") or "unshare", "--pid", "--fork", "--kill-child"]


@pytest.mark.slow
def test_sigkill_then_restart_as_the_same_pid_loses_nothing(
    tmp_path: Path, as_pid_1: list[str]
) -> None:
    """Run 1 (PID 1) is SIGKILLed mid-burst; run 2 (PID 1 again) sends what it left: 0 lost."""
    count, kill_after = 200, 100
    spool = tmp_path / "spool"
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([*sys.path, str(ROOT)])}
    with SMTPSink(faults=FaultPlan(delay=0.01)) as sink:
        first = subprocess.Popen(
            [*as_pid_1, sys.executable, "-c", SENDER, str(sink.port), str(spool), str(count)],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert first.stdout is not None
        pids = [first.stdout.readline().split()]
        returned = -1
        for line in first.stdout:
            returned = int(line)
            if returned >= kill_after:
                break
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        first.stdout.close()
        at_kill = len(sink.messages)
        left = len(list(spool.glob("*.msg")))

        second = subprocess.run(
            [*as_pid_1, sys.executable, "-c", REPLAYER, str(sink.port), str(spool)],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        pids.append(second.stdout.split()[:2])
        expected = {f"<{number}.test@example.com>" for number in range(returned + 1)}
        arrived = {message.message["Message-ID"] for message in sink.wait_for(len(expected))}
    print(
        f"\nPID 1 crash: {returned + 1} accepted, {at_kill} at the server at the kill, "
        f"{left} left on the spool, {len(expected - arrived)} lost"
    )

    assert [["pid", "1"], ["pid", "1"]] == pids  # both runs were PID 1
    assert 0 == second.returncode, second.stderr[-2000:]
    assert 0 < left  # the kill did leave messages behind
    assert set() == expected - arrived  # 0 lost
    assert [] == list(spool.glob("*.msg"))
