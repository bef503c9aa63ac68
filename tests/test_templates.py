"""The bundled templates: hygiene of the HTML, optional variables, and their translations."""

from __future__ import annotations

import gettext
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from babel.messages.pofile import read_po

from mailreset import MessageBuilder
from mailreset.testing import CapturedMessage

PACKAGE = Path(str(resources.files("mailreset")))
TEMPLATES = PACKAGE / "templates"
PO = PACKAGE / "locale" / "zh_Hans" / "LC_MESSAGES" / "mailreset.po"
BUNDLED = ["reset_password", "password_changed", "reset_password_unknown"]
REQUIRED: dict[str, dict[str, Any]] = {
    "reset_password": {
        "url": "https://acme.example/r/t0k",
        "expires_minutes": 15,
        "app_name": "Acme",
    },
    "password_changed": {"app_name": "Acme"},
    "reset_password_unknown": {"app_name": "Acme"},
}


def build(name: str, locale: str | None = None, **context: Any) -> CapturedMessage:
    builder = MessageBuilder(sender="Acme <no-reply@acme.example>", locale=locale)
    message = builder.build(name, to="bob@example.com", context={**REQUIRED[name], **context})
    return CapturedMessage.from_message(message, envelope_from="", envelope_to=())


@pytest.mark.parametrize("name", BUNDLED)
def test_each_bundled_template_has_text_and_html_with_a_subject_block(name: str) -> None:
    """Every bundled template ships a .txt and a .html, each with its subject block."""
    for suffix in (".txt", ".html"):
        source = (TEMPLATES / f"{name}{suffix}").read_text(encoding="utf-8")
        assert "{% block subject %}" in source


@pytest.mark.parametrize("locale", [None, "zh_Hans"])
@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_html_is_self_contained_with_lang_viewport_and_no_hidden_text(
    name: str, locale: str | None
) -> None:
    """Inline styles only, nothing fetched from outside, lang set; nothing hidden (spam
    filters score hidden text): the preheader is the first paragraph, in plain view."""
    html = build(name, locale).html
    body = html[html.index("<body") :]

    assert [] == re.findall(r"<style|<link|<script|@import|url\(|src=\"https?:", html)
    assert re.search(r'<html lang="(en|zh-Hans)"', html)
    assert 'name="viewport"' in html
    assert [] == re.findall(
        r"display:\s*none|opacity:\s*0|font-size:\s*[0-4]px|max-height:\s*0|mso-hide", body
    )
    assert re.search(
        r'<td align="center"[^>]*>\s*<p style="[^"]*color:#4b5563;[^"]*">[^<]+</p>', body
    )


@pytest.mark.parametrize("locale", [None, "zh_Hans"])
def test_the_reset_email_states_link_lifetime_and_what_to_do_if_not_asked(
    locale: str | None,
) -> None:
    """The reset mail carries the link (text and HTML), its lifetime and the 'ignore' note."""
    captured = build("reset_password", locale)
    lifetime, ignore = {
        None: ("expires in 15 minutes", "If you did not ask for this, ignore this email"),
        "zh_Hans": ("15 分钟后失效", "请忽略此邮件"),
    }[locale]

    assert ("https://acme.example/r/t0k",) == captured.links
    assert "https://acme.example/r/t0k" in captured.text.splitlines()
    assert [True, True] == [lifetime in captured.text, lifetime in captured.html]
    assert [True, True] == [ignore in captured.text, ignore in captured.html]


@pytest.mark.parametrize(
    ("name", "optional", "shown"),
    [
        ("reset_password", {"user_name": "Bob"}, "Hello Bob,"),
        ("password_changed", {"user_name": "Bob"}, "Hello Bob,"),
        (
            "password_changed",
            {"support_url": "https://acme.example/help"},
            "https://acme.example/help",
        ),
        (
            "reset_password_unknown",
            {"signup_url": "https://acme.example/join"},
            "https://acme.example/join",
        ),
    ],
)
def test_optional_variables_show_when_given_and_are_not_needed(
    name: str, optional: dict[str, str], shown: str
) -> None:
    """Optional context appears in both parts when given; leaving it out is fine."""
    with_it = build(name, **optional)
    without = build(name)
    with_none = build(name, **dict.fromkeys(optional))

    assert [True, True] == [shown in with_it.text, shown in with_it.html]
    assert [False, False] == [shown in without.text, shown in without.html]
    assert without.text == with_none.text


def test_the_password_changed_notice_says_what_to_do_if_it_was_not_you() -> None:
    """The notice tells the reader to act when they did not change the password."""
    assert (
        "If this was not you, contact us right away:"
        in build("password_changed", support_url="https://acme.example/help").text
    )
    assert "If this was not you, reset your password again" in build("password_changed").text


def _po_catalog() -> dict[str, str | tuple[str, ...]]:
    with PO.open("rb") as source:
        catalog = read_po(source)
    return {
        (message.id if isinstance(message.id, str) else message.id[0]): message.string
        for message in catalog
        if message.id
    }


def test_the_committed_mo_matches_the_po() -> None:
    """The .mo the runtime loads (stdlib gettext) holds exactly the .po's translations."""
    with PO.with_suffix(".mo").open("rb") as source:
        mo = gettext.GNUTranslations(source)
    expected = {
        key: value if isinstance(value, str) else tuple(value)
        for key, value in _po_catalog().items()
    }
    loaded: dict[str, str | tuple[str, ...]] = {}
    for key, value in mo._catalog.items():  # type: ignore[attr-defined]
        if not key:
            continue
        if isinstance(key, tuple):  # plural forms: (msgid, index) -> msgstr[index]
            msgid, index = key
            forms = loaded.setdefault(msgid, ())
            assert isinstance(forms, tuple)
            loaded[msgid] = (*forms[:index], value, *forms[index + 1 :])
        else:
            loaded[key] = value

    assert expected == loaded


def test_every_string_in_the_bundled_templates_is_translated() -> None:
    """Each {% trans %} string of the templates has a Chinese translation, and no extra."""
    pytest.importorskip("babel.messages.extract")
    from devtools.i18n import template_catalog

    in_templates = {
        message.id if isinstance(message.id, str) else message.id[0]
        for message in template_catalog()
        if message.id
    }
    catalog = _po_catalog()

    assert sorted(in_templates) == sorted(catalog)
    assert [] == [key for key, value in catalog.items() if not value or not all(value)]


def test_the_wheel_ships_templates_and_catalogs() -> None:
    """Templates and catalogs are package data next to the modules (hatchling ships them)."""
    names = {path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*") if path.is_file()}

    assert {
        "templates/reset_password.txt",
        "templates/reset_password.html",
        "templates/_layout.html",
        "locale/zh_Hans/LC_MESSAGES/mailreset.mo",
    } <= names


@pytest.mark.parametrize("name", BUNDLED)
def test_chinese_mails_have_no_stray_spaces_around_a_chinese_app_name(name: str) -> None:
    """CJK text needs no spaces around a name: none beside 示例应用 in the subject, the text
    or the HTML, while a Latin name keeps the spaces that set it apart."""
    chinese = build(name, "zh_Hans", app_name="示例应用")
    latin = build(name, "zh_Hans", app_name="Acme")

    stray = re.compile(r"[\u4e00-\u9fff，。：] +示例应用|示例应用 +[\u4e00-\u9fff，。：]")
    for text in (chinese.subject, chinese.text, chinese.html):
        assert [] == stray.findall(text)
        assert "示例应用" in text
    assert re.search(r"(\A|[\u4e00-\u9fff] )Acme [\u4e00-\u9fff]", latin.subject)


def test_chinese_subjects_read_as_written() -> None:
    """The three subjects with a Chinese app name, exactly."""
    subjects = [build(name, "zh_Hans", app_name="示例应用").subject for name in BUNDLED]

    assert ["重置您的示例应用密码", "您的示例应用密码已更改", "示例应用密码重置请求"] == subjects
