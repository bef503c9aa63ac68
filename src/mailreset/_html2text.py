"""The text part of an HTML-only template: readable plain text derived from the HTML.

Paragraphs and block elements become paragraphs, ``<br>`` a line break, list items ``- item``
(or ``1. item`` in ordered lists), links ``text (url)`` (just the url when the text is the
url), images their ``alt`` text. ``<head>``, ``<style>``, ``<script>`` and anything hidden with
``display:none`` (the preheader) are left out. Lines are never wrapped: a long link stays one
line, so it keeps working when copied.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["html_to_text"]

_SKIP = frozenset({"head", "style", "script", "title", "template", "noscript"})
_BLOCK = frozenset(
    {
        "address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt",
        "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
        "header", "hr", "main", "nav", "p", "pre", "section", "table", "tbody", "td", "tfoot",
        "th", "thead", "tr", "ul", "ol", "li",
    }
)  # fmt: skip
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)
_HIDDEN = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden|mso-hide\s*:\s*all", re.I)
_SPACES = re.compile(r"[ \t\r\n\f\u200b\u200c\u00ad]+")
_PARAGRAPH = "\n\n"


class _Converter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip_depth = 0
        self.open: list[tuple[str, bool]] = []  # (tag, starts hidden/skipped content)
        self.lists: list[list[int]] = []  # per open list: [next number] or [] for bullets
        self.links: list[tuple[str, int]] = []  # (href, index in out where the text starts)
        self.pre = 0

    # -- output helpers
    def _break(self, kind: str) -> None:
        if not self.out:
            return
        tail = "".join(self.out[-2:])
        if kind == _PARAGRAPH:
            if tail.endswith(_PARAGRAPH):
                return
            if tail.endswith("\n"):
                self.out.append("\n")
                return
        elif tail.endswith("\n"):
            return
        self.out.append(kind)

    def _text(self, text: str) -> None:
        if self.skip_depth:
            return
        if not self.pre:
            text = _SPACES.sub(" ", text)
            if not self.out or self.out[-1].endswith(("\n", " ")):
                text = text.lstrip(" ")
        if text:
            self.out.append(text)

    # -- parser callbacks
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        hides = tag in _SKIP or bool(_HIDDEN.search(attributes.get("style", "")))
        hides = hides or "hidden" in attributes
        if tag not in _VOID:
            self.open.append((tag, hides))
        if hides:
            self.skip_depth += 1 if tag not in _VOID else 0
            return
        if self.skip_depth:
            return
        if tag == "br":
            self.out.append("\n")
        elif tag == "img":
            self._text(attributes.get("alt", ""))
        elif tag in ("ul", "ol"):
            self._break("\n" if self.lists else _PARAGRAPH)
            self.lists.append([1] if tag == "ol" else [])
        elif tag == "li":
            self._break("\n")
            marker = "- "
            if self.lists and self.lists[-1]:
                marker = f"{self.lists[-1][0]}. "
                self.lists[-1][0] += 1
            self.out.append("  " * max(0, len(self.lists) - 1) + marker)
        elif tag in _BLOCK:
            self._break("\n" if tag in ("td", "th", "tr", "dd", "dt") else _PARAGRAPH)
            if tag == "pre":
                self.pre += 1
        elif tag == "a":
            self.links.append((attributes.get("href", "").strip(), len(self.out)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if not any(name == tag for name, _ in self.open):
            return  # a stray end tag: ignore it, as browsers do
        while self.open:
            name, hides = self.open.pop()
            if hides:
                self.skip_depth -= 1
            elif not self.skip_depth:
                self._close(name)
            if name == tag:
                break

    def _close(self, tag: str) -> None:
        if tag == "a" and self.links:
            href, start = self.links.pop()
            label = "".join(self.out[start:]).strip()
            if href and not href.startswith("#"):
                shown = href.removeprefix("mailto:")
                if not label:
                    self.out.append(href)
                elif label not in (href, shown):
                    self.out.append(f" ({href})")
        elif tag in ("ul", "ol"):
            if self.lists:
                self.lists.pop()
            self._break("\n" if self.lists else _PARAGRAPH)
        elif tag in _BLOCK:
            if tag == "pre":
                self.pre -= 1
            self._break("\n" if tag in ("td", "th", "tr", "dd", "dt", "li") else _PARAGRAPH)

    def handle_data(self, data: str) -> None:
        self._text(data)


def html_to_text(html: str) -> str:
    """Plain text that reads like ``html`` (see the module docstring), ending in a newline."""
    converter = _Converter()
    converter.feed(html)
    converter.close()
    lines = [line.rstrip() for line in "".join(converter.out).split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
    return text + "\n" if text else ""
