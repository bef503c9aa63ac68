"""Promises across processes: single-use links, fork safety, idle flows, shared limits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from examples.sqlite_users import SQLiteUsers, check_password

from mailreset.tokens import TokenService
from tests.multiproc_support import SECRET

ROOT = Path(__file__).resolve().parent.parent


def _child_env() -> dict[str, str]:
    """The environment for a ``python -m tests.multiproc_support`` child of this checkout."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def test_one_link_completed_in_four_processes_at_once_resets_once(tmp_path: Path) -> None:
    """Four processes verify one link, then all write to one SQLite table: exactly one
    succeeds, three get StaleToken, and the password is the winner's."""
    users = SQLiteUsers(str(tmp_path / "users.db"), password_cost=2**4)
    user = users.create("ada@example.org", "old password 1")
    assert user is not None
    token = TokenService(SECRET).issue("reset_password", str(user.id), bind=user.password_hash)
    meet = tmp_path / "meet"
    meet.mkdir()
    passwords = [f"new passphrase number {n}" for n in range(4)]

    child = [sys.executable, "-m", "tests.multiproc_support", "complete"]
    children = [
        subprocess.Popen(
            [*child, str(tmp_path / "users.db"), token, password, str(meet), "4"],
            cwd=ROOT,
            env=_child_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        for password in passwords
    ]
    outcomes = [child.communicate(timeout=60)[0].strip() for child in children]
    stored = users.get(str(user.id))
    assert stored is not None

    assert ["ok", "stale", "stale", "stale"] == sorted(outcomes)
    assert 4 == len(list(meet.iterdir()))  # every process had verified before anyone wrote
    assert passwords[outcomes.index("ok")] in [
        password for password in passwords if check_password(stored.password_hash, password)
    ]
