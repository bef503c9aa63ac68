"""Locales: the bundled gettext catalogs, language tags, and ``{% trans %}`` wiring.

The bundled templates ship in English (the source strings) and Simplified Chinese
(``locale/zh_Hans/LC_MESSAGES/mailreset.mo``); an app's own catalog is consulted for any
string ours lacks.
"""

from __future__ import annotations

import gettext
import io
from importlib import resources
from typing import Any

import jinja2

__all__ = ["bundled_translations", "install_translations", "language_tag"]

_BUNDLED_LOCALES = {"en": "en", "zh_hans": "zh_Hans", "zh": "zh_Hans", "zh_cn": "zh_Hans"}
_LANG_TAGS = {"en": "en", "zh_Hans": "zh-Hans"}


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
