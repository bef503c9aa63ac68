"""The sink's search language: ``to:``, ``from:``, ``subject:`` and plain words.

``to:ada subject:"reset your" link`` matches the messages whose recipients (envelope or To
header) contain "ada", whose subject contains "reset your", and that say "link" somewhere
(subject, From, To, envelope or the start of the text). Every term must match; matching is
case-insensitive and by substring; quotes keep spaces in a term. The query is matched
against the :class:`~devtools.sink.summary.Summary` kept in memory, never against the body on
disk, so a search costs the same whatever the messages weigh.
"""

from __future__ import annotations

import re

import attrs

from devtools.sink.summary import Summary

__all__ = ["FIELDS", "Query"]

#: The field prefixes a term may carry.
FIELDS = ("to", "from", "subject")
_TERM = re.compile(r'(?:(?P<field>to|from|subject):)?(?:"(?P<quoted>[^"]*)"?|(?P<word>\S+))', re.I)


@attrs.frozen
class Query:
    """A parsed search: ``(field, needle)`` terms that must all match.

    Attributes:
        terms: ``(field, needle)`` pairs, needles case-folded; field ``""`` is a plain word.
    """

    terms: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Query:
        """Parse ``text`` (``to:ada subject:"reset your" words``); an empty one matches all."""
        terms = []
        for match in _TERM.finditer(text):
            needle = match["quoted"] if match["quoted"] is not None else match["word"]
            field = (match["field"] or "").lower()
            if needle:
                terms.append((field, needle.casefold()))
            elif field:
                terms.append(("", f"{field}:"))  # "to:" alone: the word itself
        return cls(tuple(terms))

    def matches(self, summary: Summary) -> bool:
        """True when every term matches ``summary``."""
        return all(needle in _haystack(summary, field) for field, needle in self.terms)

    def __str__(self) -> str:
        return " ".join(
            f'{field}:"{needle}"' if field else f'"{needle}"' for field, needle in self.terms
        )


def _haystack(summary: Summary, field: str) -> str:
    if field == "to":
        parts = [*summary.recipients, summary.to_header]
    elif field == "from":
        parts = [summary.sender, summary.from_header]
    elif field == "subject":
        parts = [summary.subject]
    else:
        parts = [
            summary.subject,
            summary.sender,
            summary.from_header,
            *summary.recipients,
            summary.to_header,
            summary.snippet,
        ]
    return "\n".join(parts).casefold()
