"""One link extractor: what CapturedMessage.links and the debug sink's index both read."""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from devtools.sink.summary import summarize

from mailreset.testing import CapturedMessage, extract_links

RESET = "https://app.example.test/reset/tok?a=1&b=2"
HELP = "https://app.example.test/help"


@pytest.mark.parametrize(
    ("markup", "expected"),
    [
        (f'<a href="{RESET.replace("&", "&amp;")}">go</a>', (RESET,)),
        (f"<A HREF='{RESET}'>go</A>", (RESET,)),
        (f"<a class=x href={HELP}>help</a>", (HELP,)),
        (f'<a\n  title="a > b"\n  href="{HELP}">help</a>', (HELP,)),
        (f'<a data-href="https://decoy.test/" href="{HELP}">help</a>', (HELP,)),
        (f'<!-- <a href="https://decoy.test/">old</a> --><a href="{HELP}">h</a>', (HELP,)),
        ('<a href="mailto:help@example.test">mail</a><a href="#top">top</a>', ()),
        (f'<a href=" {HELP} ">h</a><a href="{HELP}">again</a>', (HELP,)),
        ("<p>no links</p><!-- unterminated <a href='https://decoy.test/'>", ()),
    ],
)
def test_hrefs_are_read_as_a_browser_would(markup: str, expected: tuple[str, ...]) -> None:
    """Entity decoding, quoting, case, comments and look-alike attributes, as HTMLParser does.

    The capture (full parse) and the sink's index (fast MIME walk) find the same links.
    """
    message = EmailMessage()
    message["From"] = "app@example.test"
    message.set_content("no link in the text")
    message.add_alternative(f"<html><body>{markup}</body></html>", subtype="html")

    assert expected == extract_links(message)
    assert expected == summarize(message.as_bytes(), "", ()).links


def test_prose_links_drop_the_closing_stop_and_bracket() -> None:
    """A URL at the end of a sentence or in brackets ends before the punctuation."""
    message = EmailMessage()
    message.set_content(f"Open {RESET}. Or ask ({HELP}), or {HELP}!")

    assert (RESET, HELP) == extract_links(message)


def _two_links() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "App <app@example.test>"
    message["Subject"] = "Reset"
    message.set_content(f"Help: {HELP}\nReset: {RESET}\n")
    message.add_alternative(
        f'<a href="{RESET.replace("&", "&amp;")}">Reset</a> <a href="{HELP}">Help</a>',
        subtype="html",
    )
    return message


def test_the_capture_reads_html_first_and_the_sink_in_part_order() -> None:
    """Both extract the same links; each keeps the order it always had."""
    raw = _two_links().as_bytes()

    captured = CapturedMessage.from_bytes(raw, envelope_from="", envelope_to=())
    summary = summarize(raw, "", ())

    assert (RESET, HELP) == captured.links
    assert (HELP, RESET) == summary.links
