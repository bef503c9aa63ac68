"""The debug sink in process: JSON API, --store round trip, size limit, terminal block."""

from __future__ import annotations

import io
import json
import smtplib
from email.message import EmailMessage
from pathlib import Path

import pytest
from devtools.sink.store import SinkStore
from devtools.sink.web import MESSAGE_CSP

from tests.devtools.support import api, http, reset_mail, running_sink

# DESIGN.md's six fields, and the From header (name and address) the viewer shows.
LIST_KEYS = {"id", "from", "to", "subject", "received_at", "size", "from_header"}
DETAIL_KEYS = LIST_KEYS | {"text", "html", "headers", "links", "attachments"}


def _send(port: int, *messages: EmailMessage, **envelope: object) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        for message in messages:
            client.send_message(message, **envelope)  # type: ignore[arg-type]


def test_list_is_newest_first_with_exactly_the_designed_fields() -> None:
    """GET /api/messages answers {total, messages}, newest first, the six fields and From."""
    with running_sink() as sink:
        _send(sink.smtp.port, reset_mail(subject="first"), reset_mail(subject="second"))
        sink.store.wait_for(2)

        body = api(sink, "/api/messages")

    assert {"total", "messages"} == set(body)
    assert 2 == body["total"]
    assert ["second", "first"] == [item["subject"] for item in body["messages"]]
    item = body["messages"][0]
    assert LIST_KEYS == set(item)
    assert "noreply@example.test" == item["from"]
    assert "App <noreply@example.test>" == item["from_header"]
    assert ["ada@example.test"] == item["to"]
    assert item["received_at"].endswith("+00:00")
    assert sink.store.entries()[0].message.size == item["size"]


def test_detail_adds_the_parsed_content() -> None:
    """GET /api/messages/{id} adds text, html, headers, links and attachments."""
    message = reset_mail()
    message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="a.pdf")
    with running_sink() as sink:
        _send(sink.smtp.port, message)
        sink.store.wait_for(1)
        (item,) = api(sink, "/api/messages")["messages"]

        detail = api(sink, f"/api/messages/{item['id']}")
        status, headers, payload = http(sink, detail["attachments"][0]["url"])

    assert DETAIL_KEYS == set(detail)
    assert "within 10 minutes" in detail["text"]
    assert '<a href="https://app.example.test/reset/tok123">' in detail["html"]
    assert ["https://app.example.test/reset/tok123"] == detail["links"]
    assert {"name": "Subject", "value": "Reset your password"} in detail["headers"]
    expected_attachment = {
        "index": 0,
        "filename": "a.pdf",
        "content_type": "application/pdf",
        "size": 8,
        "url": f"/api/messages/{item['id']}/attachments/0",
    }
    assert [expected_attachment] == detail["attachments"]
    assert (200, b"%PDF-1.4") == (status, payload)
    assert "application/octet-stream" == headers["Content-Type"]


def test_raw_and_eml_return_the_bytes_received() -> None:
    """/raw shows and /eml downloads exactly the bytes the server received."""
    with running_sink() as sink:
        _send(sink.smtp.port, reset_mail())
        sink.store.wait_for(1)
        (stored,) = sink.store.entries()

        raw_status, _, raw = http(sink, f"/api/messages/{stored.id}/raw")
        eml_status, eml_headers, eml = http(sink, f"/api/messages/{stored.id}/eml")

    assert (200, stored.message.raw) == (raw_status, raw)
    assert (200, stored.message.raw) == (eml_status, eml)
    assert f'attachment; filename="{stored.id}.eml"' == eml_headers["Content-Disposition"]


@pytest.mark.parametrize("suffix", ["", "/raw", "/eml", "/html", "/attachments/0"])
def test_an_unknown_id_is_a_404(suffix: str) -> None:
    """Every per-message route answers 404 with a JSON error for an unknown id."""
    with running_sink() as sink:
        status, headers, body = http(sink, f"/api/messages/doesnotexist{suffix}")

    assert 404 == status
    assert "application/json" == headers["Content-Type"]
    assert "doesnotexist" in json.loads(body)["error"]


def test_delete_one_and_delete_all() -> None:
    """DELETE on a message removes it; DELETE /api/messages empties the list."""
    with running_sink() as sink:
        _send(sink.smtp.port, reset_mail(subject="a"), reset_mail(subject="b"))
        sink.store.wait_for(2)
        newest = api(sink, "/api/messages")["messages"][0]["id"]

        assert {"deleted": 1} == api(sink, f"/api/messages/{newest}", method="DELETE")
        assert 404 == http(sink, f"/api/messages/{newest}", method="DELETE")[0]
        assert ["a"] == [m["subject"] for m in api(sink, "/api/messages")["messages"]]
        assert {"deleted": 1} == api(sink, "/api/messages", method="DELETE")
        assert {"total": 0, "messages": []} == api(sink, "/api/messages")


def test_message_html_is_served_with_a_no_script_sandboxing_policy() -> None:
    """The HTML part comes with a CSP that forbids scripts and remote loads and sandboxes it."""
    html = '<p>hi</p><script>document.title="ran"</script><img src="https://tracker.test/p.gif">'
    with running_sink() as sink:
        _send(sink.smtp.port, reset_mail(html=html))
        sink.store.wait_for(1)
        (stored,) = sink.store.entries()

        status, headers, _ = http(sink, f"/api/messages/{stored.id}/html")

    assert 200 == status
    assert MESSAGE_CSP == headers["Content-Security-Policy"]
    policy = dict(part.strip().split(" ", 1) for part in MESSAGE_CSP.split(";"))
    assert "'none'" == policy["default-src"]
    assert "script-src" not in policy
    assert "allow-scripts" not in policy["sandbox"]
    assert "https:" not in MESSAGE_CSP


def test_polling_the_list_is_cheap_when_nothing_changed() -> None:
    """The list carries an ETag; asking again with it gets 304 until a message arrives."""
    with running_sink() as sink:
        _, headers, _ = http(sink, "/api/messages")
        etag = headers["ETag"]

        unchanged = http(sink, "/api/messages", headers={"If-None-Match": etag})[0]
        _send(sink.smtp.port, reset_mail())
        sink.store.wait_for(1)
        changed = http(sink, "/api/messages", headers={"If-None-Match": etag})[0]

    assert (304, 200) == (unchanged, changed)


def test_the_viewer_answers_only_to_loopback_host_names() -> None:
    """A request naming another host (DNS rebinding) is refused with 403."""
    with running_sink() as sink:
        refused = http(sink, "/api/messages", headers={"Host": "attacker.example"})[0]
        allowed = http(sink, "/api/messages", headers={"Host": "localhost:8026"})[0]

    assert (403, 200) == (refused, allowed)


def test_cross_origin_delete_is_refused() -> None:
    """DELETE with a foreign Origin header deletes nothing."""
    with running_sink() as sink:
        _send(sink.smtp.port, reset_mail())
        sink.store.wait_for(1)

        status = http(
            sink, "/api/messages", method="DELETE", headers={"Origin": "https://evil.example"}
        )[0]

        assert 403 == status
        assert 1 == len(sink.store)


def test_the_viewer_page_allows_only_its_own_script() -> None:
    """The viewer page's CSP allows scripts from the sink itself and nothing inline."""
    with running_sink() as sink:
        status, headers, body = http(sink, "/")
        script = http(sink, "/static/app.js")

    assert 200 == status
    assert "script-src 'self';" in headers["Content-Security-Policy"]
    assert b'<script src="/static/app.js"' in body
    assert 200 == script[0]


def test_store_directory_round_trip(tmp_path: Path) -> None:
    """With --store, a restarted sink lists the same messages, ids and envelopes again."""
    message = reset_mail(subject="kept")
    with running_sink(directory=tmp_path) as first:
        _send(first.smtp.port, message, to_addrs=["ada@example.test", "hidden@example.test"])
        _send(first.smtp.port, reset_mail(subject="newer"))
        first.store.wait_for(2)
        before = api(first, "/api/messages")
        raw = first.store.entries()[1].message.raw

    with running_sink(directory=tmp_path) as second:
        after = api(second, "/api/messages")
        kept_id = after["messages"][1]["id"]
        raw_status, _, raw_again = http(second, f"/api/messages/{kept_id}/raw")

    assert before == after
    assert ["ada@example.test", "hidden@example.test"] == after["messages"][1]["to"]
    assert (200, raw) == (raw_status, raw_again)
    assert 2 == len(list(tmp_path.glob("*.eml")))
    assert [] == list(tmp_path.glob(".*"))


def test_deleting_removes_the_stored_files(tmp_path: Path) -> None:
    """Deleting a message through the API deletes its .eml and its envelope file."""
    with running_sink(directory=tmp_path) as sink:
        _send(sink.smtp.port, reset_mail())
        sink.store.wait_for(1)
        (stored,) = sink.store.entries()

        api(sink, f"/api/messages/{stored.id}", method="DELETE")

    assert [] == list(tmp_path.iterdir())


def test_a_hand_dropped_eml_file_is_loaded(tmp_path: Path) -> None:
    """An .eml put into the store folder by hand is listed, its envelope read from headers."""
    (tmp_path / "handmade.eml").write_bytes(reset_mail(subject="by hand").as_bytes())
    (tmp_path / "not a sink name.eml").write_bytes(b"ignored")
    warnings: list[str] = []

    store = SinkStore(directory=tmp_path, warn=warnings.append)

    (entry,) = store.entries()
    assert ("handmade", "by hand") == (entry.id, entry.message.subject)
    assert ("ada@example.test",) == entry.message.envelope_to
    assert ["skipping not a sink name.eml: not a name the sink writes"] == warnings


def test_the_ring_keeps_only_the_newest_messages() -> None:
    """With max_messages=3, the oldest messages are forgotten first."""
    with running_sink(max_messages=3, http_port=None) as sink:
        _send(sink.smtp.port, *(reset_mail(subject=str(n)) for n in range(5)))

        assert ["4", "3", "2"] == [entry.message.subject for entry in sink.store.entries()]


def test_a_message_over_max_size_gets_552_and_is_not_kept() -> None:
    """A message bigger than max_size is refused with 552 and stored nowhere."""
    big = reset_mail(html="<p>" + "x" * 5000 + "</p>")
    with running_sink(max_size=2000) as sink:
        # smtplib announces SIZE, so the refusal comes at MAIL FROM; without it, after DATA.
        with pytest.raises(smtplib.SMTPResponseException) as refused:
            _send(sink.smtp.port, big)

        assert 552 == refused.value.smtp_code
        assert 0 == len(sink.store)


def test_smtputf8_and_8bitmime_are_accepted() -> None:
    """An internationalised address (SMTPUTF8) and an 8-bit body (8BITMIME) are captured."""
    message = reset_mail(to="zoë@exämple.test", subject="Réinitialiser")
    raw = (
        b"From: app@example.test\r\nTo: bob@example.test\r\nSubject: 8bit\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + "caf\u00e9 https://app.example.test/reset/x\r\n".encode()
    )
    with running_sink() as sink:
        with smtplib.SMTP("127.0.0.1", sink.smtp.port, timeout=10) as client:
            client.send_message(message, mail_options=["SMTPUTF8"])
            client.sendmail("app@example.test", ["bob@example.test"], raw, ["BODY=8BITMIME"])
        sink.store.wait_for(2)
        items = api(sink, "/api/messages")["messages"]

    assert [["bob@example.test"], ["zoë@exämple.test"]] == [item["to"] for item in items]
    assert ["8bit", "Réinitialiser"] == [item["subject"] for item in items]


def test_the_terminal_block_shows_the_fields_and_a_clickable_link() -> None:
    """Each message prints a block with time, from, to, subject, its links and a view link."""
    terminal = io.StringIO()
    with running_sink(terminal=terminal) as sink:
        _send(sink.smtp.port, reset_mail())
        sink.store.wait_for(1)
        assert sink.printer is not None
        assert sink.printer.flush(5)
        (stored,) = sink.store.entries()
        viewer = sink.web.url if sink.web else ""

    lines = terminal.getvalue().splitlines()
    assert lines[0].startswith("--- ")
    assert f"message {stored.id}" in lines[0]
    expected = [
        "  From:    noreply@example.test",
        "  To:      ada@example.test",
        "  Subject: Reset your password",
        "  Link:    https://app.example.test/reset/tok123",
        f"  View:    {viewer}#/messages/{stored.id}",
    ]
    assert expected == lines[1:]


def test_the_terminal_block_strips_control_characters() -> None:
    """An escape sequence in a subject never reaches the terminal."""
    terminal = io.StringIO()
    raw = (
        b"From: a@example.test\r\nTo: b@example.test\r\n"
        b"Subject: =?utf-8?q?hi=1B]0;pwn=07?=\r\n\r\nx\r\n"
    )
    with running_sink(terminal=terminal, http_port=None) as sink:
        with smtplib.SMTP("127.0.0.1", sink.smtp.port, timeout=10) as client:
            client.sendmail("a@example.test", ["b@example.test"], raw)
        sink.store.wait_for(1)
        assert sink.printer is not None
        assert sink.printer.flush(5)

    assert "\x1b" not in terminal.getvalue()
    assert "  Subject: hi?]0;pwn?" in terminal.getvalue().splitlines()
