"""Every code block in README.md runs: Python blocks are executed, commands are checked.

Python blocks run in order, each in a fresh namespace, against real parts: the debug sink's
port 8025 and Redis's 6379 are pointed at servers the test starts on free ports. A block that
defines ``test_*`` functions is a pytest example: they are called with the fixtures they name.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import io
import itertools
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailreset.testing import Outbox, SMTPSink

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```(?P<lang>[a-z]*)\n(?P<body>.*?)^```$", re.M | re.S)


def _blocks(*languages: str) -> list[tuple[int, str]]:
    text = README.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, match.start()) + 1, match["body"])
        for match in FENCE.finditer(text)
        if match["lang"] in languages
    ]


PYTHON_BLOCKS = _blocks("python")
COMMAND_BLOCKS = _blocks("console", "bash", "sh", "shell")


def test_the_readme_has_the_two_front_door_commands() -> None:
    """The quick start shows the demo and the test command."""
    commands = "\n".join(body for _, body in COMMAND_BLOCKS)

    assert "pip install nox && nox -s demo" in commands
    assert "nox -s tests" in commands


def test_every_fenced_block_has_a_language() -> None:
    """A block without a language would escape this test, so there are none."""
    text = README.read_text(encoding="utf-8")
    unlabelled = [line for line in re.findall(r"^```(\S*)$", text, re.M)[::2] if not line]

    assert [] == unlabelled


@pytest.fixture
def readme_sink() -> Iterator[SMTPSink]:
    """A capture server standing in for the debug sink on 127.0.0.1:8025."""
    with SMTPSink() as sink:
        yield sink


def _localise(code: str, sink: SMTPSink, redis_url: str | None) -> str:
    code = re.sub(r"\b8025\b", str(sink.port), code)
    if redis_url is not None:
        code = code.replace("redis://127.0.0.1:6379/0", redis_url)
    return code


@pytest.mark.parametrize(
    ("line", "code"), PYTHON_BLOCKS, ids=[f"line{line}" for line, _ in PYTHON_BLOCKS]
)
def test_python_block_runs(
    line: int, code: str, readme_sink: SMTPSink, request: pytest.FixtureRequest
) -> None:
    """The block runs as written (with the servers' ports swapped in)."""
    # A framework's block needs that framework (`nox -s minimums` installs none of them).
    for framework in ("flask", "bottle", "fastapi", "django"):
        if re.search(rf"^(?:from|import) {framework}\b", code, re.MULTILINE):
            pytest.importorskip(framework)
    redis_url = None
    if "redis://" in code:
        redis_url = request.getfixturevalue("redis_server").url
    namespace: dict[str, Any] = {"__name__": f"readme_line{line}"}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(
            compile(_localise(code, readme_sink, redis_url), f"README.md:{line}", "exec"),
            namespace,
        )

    fixtures = {"mail_outbox": Outbox, "smtp_sink": lambda: readme_sink}
    for name, function in list(namespace.items()):
        if name.startswith("test_") and callable(function):
            arguments = {
                parameter: fixtures[parameter]()
                for parameter in inspect.signature(function).parameters
            }
            function(**arguments)

    # `print(...)  # what it prints` promises an output: keep the promise.
    promised = re.findall(r"^[ \t]*print\(.*\)[ \t]+#[ \t]*(.+)$", code, re.M)
    assert [] == [text for text in promised if text.strip() not in printed.getvalue()]


def _nox_sessions() -> set[str]:
    """Session names the noxfile defines: functions decorated with ``@nox.session``."""
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any("session" in ast.unparse(decorator) for decorator in node.decorator_list)
    }


def test_every_nox_session_named_in_the_readme_exists() -> None:
    """`nox -s NAME` in any command block names a session the noxfile defines."""
    named = {
        name
        for _, body in COMMAND_BLOCKS
        for match in re.finditer(r"nox -s ([^\n]*)", body)
        for name in itertools.takewhile(
            lambda word: not word.startswith("-"), match.group(1).split()
        )
    }
    sessions = _nox_sessions()

    assert set() == named - sessions


def test_every_readme_command_parses_as_shell() -> None:
    """Each command line is well-formed shell (quotes balanced, continuations joined)."""
    for line, body in COMMAND_BLOCKS:
        joined = body.replace("\\\n", " ")
        for command in joined.splitlines():
            if command.strip() and not command.lstrip().startswith("#"):
                assert shlex.split(command), f"README.md:{line}: {command!r}"
