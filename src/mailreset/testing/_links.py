"""The http(s) links of a message's text parts: one extractor for the captures and the sink.

Regular expressions, not :class:`html.parser.HTMLParser`: on a reset mail's HTML the parser
takes about 200 us where these take 3, and the debug sink summarises every message as it
arrives. They follow the parser where it matters for mail: comments hide links, a quoted
``>`` does not end a tag, ``data-href`` is not ``href``, and character references decode.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

__all__ = ["links_in"]

# Stops at whitespace, quotes and the brackets that usually close a link in prose: "(url)".
_URL_IN_TEXT = re.compile(r"""https?://[^\s<>"'()\[\]]+""")
_TRAILING_PUNCTUATION = ".,;:!?"
_HREF = re.compile(
    # <a, then attributes (quoted values may hold ">"), then href=VALUE in any of its 3 forms.
    r"""<a\s(?:[^>"']|"[^"]*"|'[^']*')*?(?<![\w-])href\s*=\s*"""
    r"""(?:"([^"]*)"|'([^']*)'|([^\s>]+))""",
    re.IGNORECASE,
)
_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)


def links_in(parts: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """Every http(s) link in ``parts``, first seen first, no repeats.

    ``parts`` are ``(subtype, decoded text)`` pairs: the ``href`` of each ``<a>`` is read from
    ``"html"`` parts, URLs in the prose from the others (without a sentence's final stop).
    """
    found: list[str] = []
    for subtype, text in parts:
        if subtype == "html":
            markup = _COMMENT.sub("", text) if "<!--" in text else text
            for groups in _HREF.findall(markup):
                href = html.unescape(next((group for group in groups if group), "")).strip()
                if href.startswith(("http://", "https://")):
                    found.append(href)
        else:
            found.extend(
                match.rstrip(_TRAILING_PUNCTUATION) for match in _URL_IN_TEXT.findall(text)
            )
    return tuple(dict.fromkeys(found))
