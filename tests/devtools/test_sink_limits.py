"""The sink's bounds and manners: memory, connections, file modes, deleting only its own."""

from __future__ import annotations

import base64
import os
import smtplib
import socket
import stat
import threading
import time
from pathlib import Path

import pytest
from devtools.sink.store import MEMORY_LIMIT, SinkStore
from devtools.sink.web import SinkWebServer

from tests.devtools.support import SinkProcess, api, reset_mail, running_sink, wait_until

MB = 1024 * 1024


def _big_message(index: int, size: int) -> bytes:
    """A message of about ``size`` bytes: a text part and a base64 attachment."""
    payload = base64.encodebytes(os.urandom(size * 3 // 4)).replace(b"\n", b"\r\n")
    return (
        b"From: App <noreply@example.test>\r\nTo: ada@example.test\r\n"
        b"Subject: big " + str(index).encode() + b"\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nSee https://app.example.test/big\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="a.bin"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + payload + b"--b--\r\n"
    )


def _memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in {"VmRSS", "VmHWM"}:
            fields[name] = int(value.split()[0])
    return fields


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc (Linux)")
def test_fifty_messages_of_five_megabytes_keep_rss_under_200_mb(tmp_path: Path) -> None:
    """50 messages of 5 MB, then viewing one: the sink process's peak RSS stays < 200 MB."""
    process = SinkProcess(
        "--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--quiet", env={"TMPDIR": str(tmp_path)}
    )
    try:
        viewer = process.wait_for_line(r"viewer at (http://\S+)")[1]
        port = int(viewer.rsplit(":", 1)[1].strip("/"))
        with smtplib.SMTP("127.0.0.1", process.smtp_port, timeout=60) as client:
            for index in range(50):
                client.sendmail(
                    "noreply@example.test", ["ada@example.test"], _big_message(index, 5 * MB)
                )
        after_receiving = _memory_kib(process.process.pid)

        listing = _get_json(port, "/api/messages")
        newest = listing["messages"][0]["id"]
        detail = _get_json(port, f"/api/messages/{newest}")
        (spill,) = tmp_path.glob("mailreset-sink-*")
        files = sorted(spill.iterdir())
        modes = {_mode(path) for path in files}
        sizes = [path.stat().st_size for path in files]
        folder_mode = _mode(spill)
        after_viewing = _memory_kib(process.process.pid)
    finally:
        status, stderr = process.stop()

    assert 50 == listing["total"]
    assert ["https://app.example.test/big"] == detail["links"]
    assert 50 == len(files)
    assert all(size > 5 * MB for size in sizes)
    assert ({0o600}, 0o700) == (modes, folder_mode)
    assert after_receiving["VmRSS"] < 200 * 1024, after_receiving
    assert after_viewing["VmHWM"] < 200 * 1024, after_viewing
    print(f"sink memory: after receiving {after_receiving}, after viewing {after_viewing}")
    assert (0, []) == (status, list(tmp_path.iterdir())), stderr


def _get_json(port: int, path: str) -> dict:
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        return json.loads(response.read())


def test_a_large_body_lives_on_disk_in_a_private_folder_removed_at_stop() -> None:
    """Without --store, a body over the memory limit is a 0600 file in a 0700 temp folder."""
    big = reset_mail(html="<p>" + "x" * (MEMORY_LIMIT + 1000) + "</p>")
    with running_sink(http_port=0) as sink:
        with smtplib.SMTP("127.0.0.1", sink.smtp.port, timeout=10) as client:
            client.send_message(reset_mail(subject="small"))
            client.send_message(big)
        sink.store.wait_for(2)
        large, small = sink.store.entries()
        assert large.path is not None
        folder = large.path.parent
        modes = (_mode(folder), _mode(large.path))
        detail = api(sink, f"/api/messages/{large.id}")

    assert (None, None) == (small.path, large.raw)
    assert small.raw is not None
    assert (0o700, 0o600) == modes
    assert detail["html"].startswith("<p>xxx")
    assert not folder.exists()


def test_store_files_are_0600_in_a_0700_folder_the_sink_made(tmp_path: Path) -> None:
    """--store DIR that does not exist yet is made 0700; each .eml and .json is 0600."""
    folder = tmp_path / "mail"
    old_umask = os.umask(0o022)
    try:
        with running_sink(directory=folder, http_port=None) as sink:
            with smtplib.SMTP("127.0.0.1", sink.smtp.port, timeout=10) as client:
                client.send_message(reset_mail())
            sink.store.wait_for(1)
    finally:
        os.umask(old_umask)

    assert 0o700 == _mode(folder)
    files = sorted(folder.iterdir())
    assert [".eml", ".json"] == [path.suffix for path in files]
    assert [0o600, 0o600] == [_mode(path) for path in files]


def test_delete_all_deletes_only_what_the_sink_wrote(tmp_path: Path) -> None:
    """DELETE /api/messages spares package.json, notes, a hand-made .eml and other files."""
    foreign = {
        "package.json": b'{"name": "my-app"}',
        "notes.txt": b"remember the milk",
        "0123456789abcdef01.json": b'{"a": "user file with a sink-like name"}',
        "handmade.eml": reset_mail(subject="by hand").as_bytes(),
        "handmade.json": b'{"not": "an envelope"}',
    }
    for name, content in foreign.items():
        (tmp_path / name).write_bytes(content)
    # max_messages=2: the oldest message is forgotten but its files stay until "delete all".
    store = SinkStore(directory=tmp_path, max_messages=2, warn=lambda text: None)
    with running_sink(store=store) as sink:
        with smtplib.SMTP("127.0.0.1", sink.smtp.port, timeout=10) as client:
            for number in range(3):
                client.send_message(reset_mail(subject=f"sent {number}"))
        wait_until(lambda: 11 == len(list(tmp_path.iterdir())))

        deleted = api(sink, "/api/messages", method="DELETE")
        listing = api(sink, "/api/messages")

    assert {"deleted": 2} == deleted
    assert 0 == listing["total"]
    assert sorted(foreign) == sorted(path.name for path in tmp_path.iterdir())
    assert all(content == (tmp_path / name).read_bytes() for name, content in foreign.items())


def test_idle_connections_are_bounded_and_time_out() -> None:
    """Beyond max_connections a client gets 503 at once; idle ones close after the timeout."""
    store = SinkStore()
    web = SinkWebServer(store, port=0, max_connections=8, idle_timeout=0.5).start()
    threads_before = threading.active_count()
    idle: list[socket.socket] = []
    try:
        idle.extend(socket.create_connection(("127.0.0.1", web.port), timeout=5) for _ in range(8))
        wait_until(lambda: threading.active_count() >= threads_before + 8)
        extra = socket.create_connection(("127.0.0.1", web.port), timeout=5)
        with extra:
            refused = extra.recv(1024)
        threads_at_most = threading.active_count() - threads_before

        closed_by_server = [conn.recv(1024) for conn in idle]  # blocks until the idle timeout
        wait_until(lambda: threading.active_count() <= threads_before)
        status, _, _ = _http_status(web.port, "/api/messages")
    finally:
        for conn in idle:
            conn.close()
        web.stop()

    assert refused.startswith(b"HTTP/1.1 503 ")
    assert threads_at_most <= 8
    assert [b""] * 8 == closed_by_server
    assert 200 == status


def test_event_streams_and_waits_have_their_own_bound() -> None:
    """With every stream slot taken, one more wait gets 503 and plain requests still work."""
    store = SinkStore()
    web = SinkWebServer(store, port=0, max_connections=8, max_streams=2).start()
    streams = []
    try:
        for _ in range(2):
            conn = socket.create_connection(("127.0.0.1", web.port), timeout=5)
            conn.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            streams.append(conn)
        wait_until(lambda: 2 == web.open_streams)
        waited = _http_status(web.port, "/api/messages/wait?q=x&timeout=5")
        listed = _http_status(web.port, "/api/messages")
    finally:
        for conn in streams:
            conn.close()
        web.stop()

    assert 503 == waited[0]
    assert 200 == listed[0]


def _http_status(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    import urllib.error
    import urllib.request

    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            assert time.monotonic() - started < 5
            return error.code, dict(error.headers), error.read()
