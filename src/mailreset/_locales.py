"""Locales: the bundled gettext catalogs, language tags, and ``{% trans %}`` wiring.

The bundled templates ship in English (the source strings) and Simplified Chinese
(``locale/zh_Hans/LC_MESSAGES/mailreset.mo``); an app's own catalog is consulted for any
string ours lacks.
"""

from __future__ import annotations

import gettext
import io
import re
from importlib import resources
from typing import Any

import jinja2

__all__ = ["bundled_translations", "install_translations", "join_cjk", "language_tag", "unspaced"]

_BUNDLED_LOCALES = {"en": "en", "zh_hans": "zh_Hans", "zh": "zh_Hans", "zh_cn": "zh_Hans"}
_LANG_TAGS = {"en": "en", "zh_Hans": "zh-Hans"}
#: Languages written without spaces between words.
_UNSPACED = ("zh", "ja")
# CJK punctuation, kana, CJK ideographs (extension A, unified, compatibility), full-width forms.
_CJK = "\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_SPACE_BETWEEN_CJK = re.compile(f"(?<=[{_CJK}]) +(?=[{_CJK}])")


def bundled_translations(locale: str | None) -> tuple[gettext.NullTranslations, str | None]:
    """Our own catalog for ``locale`` and its canonical name (None when we ship none)."""
    if locale is None:
        return gettext.NullTranslations(), "en"
    key = locale.replace("-", "_").lower()
    canonical = _BUNDLED_LOCALES.get(key)
    if canonical is None and key.startswith("en_"):
        canonical = "en"
    if canonical is None:
        return gettext.NullTranslations(), None
    if canonical == "en":
        return gettext.NullTranslations(), canonical
    catalog = resources.files("mailreset") / "locale" / canonical / "LC_MESSAGES" / "mailreset.mo"
    return gettext.GNUTranslations(io.BytesIO(catalog.read_bytes())), canonical


def language_tag(locale: str) -> str:
    """The BCP 47 tag for a canonical locale (``zh_Hans`` -> ``zh-Hans``)."""
    return _LANG_TAGS.get(locale, locale.replace("_", "-"))


def unspaced(locale: str) -> bool:
    """True for a language written without spaces between words (Chinese, Japanese)."""
    return locale.startswith(_UNSPACED)


def join_cjk(text: str) -> str:
    """``text`` without the spaces that sit between two CJK characters.

    A translation keeps a space on each side of a placeholder (``重置您的 %(app_name)s
    密码``), which suits a Latin name ("Acme") but leaves stray spaces around a Chinese one
    (示例应用): those go, the ones next to Latin text stay.
    """
    return _SPACE_BETWEEN_CJK.sub("", text) if " " in text else text


def _defined(count: Any) -> Any:
    # An undefined count must be a TemplateError like any undefined variable; Python 3.13's
    # gettext would otherwise only warn ("Plural value must be an integer") and carry on.
    # The builder's environments use StrictUndefined, whose str() raises UndefinedError.
    if isinstance(count, jinja2.Undefined):
        str(count)
        raise jinja2.UndefinedError("the plural count of a {% trans %} block is undefined")
    return count


def install_translations(
    environment: jinja2.Environment, catalog: gettext.NullTranslations
) -> None:
    """Install ``catalog`` for ``{% trans %}``, with plural counts held to StrictUndefined."""

    def ngettext(singular: str, plural: str, count: Any) -> str:
        return catalog.ngettext(singular, plural, _defined(count))

    def npgettext(context: str, singular: str, plural: str, count: Any) -> str:
        return catalog.npgettext(context, singular, plural, _defined(count))

    environment.install_gettext_callables(  # type: ignore[attr-defined]
        catalog.gettext, ngettext, newstyle=True, pgettext=catalog.pgettext, npgettext=npgettext
    )
