"""Translations of the bundled templates: ``python -m devtools.i18n {extract,compile,check}``.

- ``extract``: collect the ``{% trans %}`` strings of ``src/mailreset/templates`` into
  ``src/mailreset/locale/mailreset.pot`` and merge them into every ``.po`` (new strings come
  in untranslated; translate them, then compile).
- ``compile``: write each ``.po`` as the ``.mo`` the runtime loads with stdlib ``gettext``.
- ``check``: exit 1 when a ``.mo`` is out of date or a string is untranslated.

Needs Babel (a development dependency only: the runtime never imports it).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "mailreset"
TEMPLATES = PACKAGE / "templates"
LOCALE = PACKAGE / "locale"
DOMAIN = "mailreset"
METHOD_MAP = [("**.html", "jinja2.ext:babel_extract"), ("**.txt", "jinja2.ext:babel_extract")]
OPTIONS = {"extensions": "jinja2.ext.i18n", "trim_blocks": "true", "lstrip_blocks": "true"}


def template_catalog() -> Catalog:
    """Every translatable string of the bundled templates, as a Babel catalog."""
    catalog = Catalog(project="mailreset", domain=DOMAIN, charset="utf-8")
    for filename, lineno, message, comments, context in extract_from_dir(
        str(TEMPLATES), METHOD_MAP, {pattern: OPTIONS for pattern, _ in METHOD_MAP}
    ):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def po_files() -> list[Path]:
    """The committed ``.po`` files, one per shipped locale."""
    return sorted(LOCALE.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))


def compiled(po_path: Path) -> bytes:
    """The ``.mo`` bytes for ``po_path``."""
    with po_path.open("rb") as source:
        catalog = read_po(source, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    return buffer.getvalue()


def extract() -> None:
    """Refresh the .pot and merge it into every .po."""
    template = template_catalog()
    LOCALE.mkdir(exist_ok=True)
    with (LOCALE / f"{DOMAIN}.pot").open("wb") as out:
        write_po(out, template, omit_header=False, width=99, sort_output=True)
    for po_path in po_files():
        with po_path.open("rb") as source:
            catalog = read_po(source, locale=po_path.parent.parent.name, domain=DOMAIN)
        catalog.update(template, no_fuzzy_matching=True)
        with po_path.open("wb") as out:
            write_po(out, catalog, width=99, sort_output=True, ignore_obsolete=True)
        print(f"updated {po_path.relative_to(PACKAGE.parent.parent)}")


def compile_all() -> None:
    """Write every .mo from its .po."""
    for po_path in po_files():
        po_path.with_suffix(".mo").write_bytes(compiled(po_path))
        print(f"compiled {po_path.with_suffix('.mo').relative_to(PACKAGE.parent.parent)}")


def check() -> int:
    """1 when a .mo is stale or a string untranslated, else 0."""
    problems = []
    for po_path in po_files():
        with po_path.open("rb") as source:
            catalog = read_po(source, domain=DOMAIN)
        problems += [
            f"{po_path}: untranslated {message.id!r}"
            for message in catalog
            if message.id and (message.fuzzy or not message.string or not all(message.string))
        ]
        if po_path.with_suffix(".mo").read_bytes() != compiled(po_path):
            problems.append(
                f"{po_path.with_suffix('.mo')} is stale: python -m devtools.i18n compile"
            )
    print("\n".join(problems) or "translations are complete and compiled")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m devtools.i18n", description=__doc__)
    parser.add_argument("command", choices=["extract", "compile", "check"])
    command = parser.parse_args(argv).command
    if command == "extract":
        extract()
    elif command == "compile":
        compile_all()
    else:
        return check()
    return 0


if __name__ == "__main__":
    sys.exit(main())
