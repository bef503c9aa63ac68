"""The Jinja2 side of the builder: the environment, template look-up and rendering.

The app's templates come first and the bundled ones after, so an app overrides a bundled
template by naming its own the same. Undefined variables are errors (``StrictUndefined``), HTML
templates are autoescaped and text templates are not, and ``{% trans %}`` works
(``jinja2.ext.i18n``). The subject is ``{% block subject %}``, rendered on its own and never
part of the body.
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Iterator
from typing import Any, NoReturn

import attrs
import jinja2
from markupsafe import Markup

from mailreset._html2text import html_to_text
from mailreset.errors import ConfigurationError, TemplateError

__all__ = ["Rendered", "Templates", "TemplatesInput"]

#: What ``MessageBuilder(templates=...)`` takes.
TemplatesInput = str | os.PathLike[str] | jinja2.BaseLoader | jinja2.Environment | None

_MANY_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_BLANK_LINE = re.compile(r"^[ \t]+$", re.M)


@attrs.frozen
class Rendered:
    """One template rendered: the text body, the HTML body (or None) and the subject."""

    text: str
    html: str | None
    subject: str | None


class Templates:
    """Finds, compiles (once) and renders ``{name}.txt`` / ``{name}.html`` templates.

    Attributes:
        environment: the Jinja2 environment in use.
        where: where templates are looked for, for error messages and reprs.
    """

    def __init__(self, templates: TemplatesInput) -> None:
        self.environment, self.where = _environment(templates)
        self._cache = not self.environment.auto_reload
        self._templates: dict[str, jinja2.Template | None] = {}

    def render(self, name: str, variables: dict[str, Any]) -> Rendered:
        """Render template ``name`` (its text and/or HTML file) with ``variables``.

        Raises:
            TemplateError: neither file exists, a syntax error, an undefined variable.
        """
        if not isinstance(name, str) or not name:
            raise TemplateError(f"the template name must be a non-empty string, not {name!r}")
        text_template = self._template(f"{name}.txt")
        html_template = self._template(f"{name}.html")
        if text_template is None and html_template is None:
            raise TemplateError(
                f"no template {name!r}: tried {name}.txt and {name}.html in {self.where}",
                template=name,
            )
        subject = None
        html = None
        if html_template is not None:
            html, subject = _render_template(html_template, variables)
            if subject is not None:
                # Rendered with autoescape, so it is markup: strip tags, unescape &amp; etc.
                subject = Markup(subject).striptags()  # noqa: S704
        if text_template is not None:
            text, text_subject = _render_template(text_template, variables)
            subject = text_subject if text_subject is not None else subject
            text = _tidy_text(text)
        else:  # HTML only (one of the two exists, checked above)
            text = html_to_text(html or "")
        if subject is not None:
            subject = _collapse(subject)
        return Rendered(text, html, subject)

    def _template(self, name: str) -> jinja2.Template | None:
        if self._cache and name in self._templates:
            return self._templates[name]
        try:
            found: jinja2.Template | None = self.environment.get_template(name)
        except jinja2.TemplateNotFound as exc:
            if exc.name != name:  # a missing {% extends %} or {% include %} inside it
                raise TemplateError(
                    f"template {name!r} refers to a template that does not exist: {exc.name!r}",
                    template=name,
                ) from exc
            found = None
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"template {exc.name or name!r} has a syntax error on line {exc.lineno}: "
                f"{exc.message}",
                template=name,
            ) from exc
        if self._cache:
            self._templates[name] = found
        return found


def _autoescape(name: str | None) -> bool:
    return name is not None and name.endswith((".html", ".htm", ".xml", ".xhtml"))


def _environment(templates: TemplatesInput) -> tuple[jinja2.Environment, str]:
    bundled = jinja2.PackageLoader("mailreset", "templates")
    if templates is None:
        loader: jinja2.BaseLoader = bundled
        where = "the bundled templates"
        base = None
    elif isinstance(templates, jinja2.Environment):
        base = templates
        loader = bundled if base.loader is None else jinja2.ChoiceLoader([base.loader, bundled])
        where = "the given Environment's loader and the bundled templates"
    elif isinstance(templates, jinja2.BaseLoader):
        base = None
        loader = jinja2.ChoiceLoader([templates, bundled])
        where = f"{type(templates).__name__} and the bundled templates"
    elif isinstance(templates, (str, os.PathLike)):
        base = None
        folder = os.fspath(templates)
        if not os.path.isdir(folder):
            raise ConfigurationError(f"templates folder {folder!r} does not exist")
        loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(folder), bundled])
        where = f"{folder!r} and the bundled templates"
    else:
        raise ConfigurationError(
            "templates must be a folder path, a jinja2 loader or a jinja2 Environment, "
            f"not {type(templates).__name__}"
        )
    if base is None:
        environment = jinja2.Environment(
            loader=loader,
            autoescape=_autoescape,  # noqa: S701 (a function: True for .html, False for .txt)
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
            extensions=["jinja2.ext.i18n"],
        )
    else:
        environment = base.overlay(
            loader=loader, autoescape=_autoescape, undefined=jinja2.StrictUndefined
        )
        # overlay() shares the app's globals dict: give ours a copy before the i18n extension
        # and gettext add names to it.
        environment.globals = dict(base.globals)
        environment.add_extension("jinja2.ext.i18n")
    return environment, where


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _tidy_text(text: str) -> str:
    """Whitespace-only lines emptied, runs of blank lines cut to one, one final newline."""
    text = _BLANK_LINE.sub("", text)
    text = _MANY_BLANK_LINES.sub("\n\n", text).strip("\n")
    return text + "\n"


def _where_failed(exc: BaseException) -> str:
    """`` (line N of NAME)`` for the innermost template frame of ``exc``'s traceback."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if not frame.filename.endswith(".py") and frame.lineno:
            return f" (line {frame.lineno} of {os.path.basename(frame.filename)})"
    return ""


def _empty_block(context: jinja2.runtime.Context) -> Iterator[str]:
    return iter(())


def _render_template(
    template: jinja2.Template, variables: dict[str, Any]
) -> tuple[str, str | None]:
    """The body (without the subject block) and the subject block, rendered separately."""
    name = template.name or "<template>"
    try:
        try:
            subject = None
            block = template.blocks.get("subject")
            if block is not None:
                subject = "".join(block(template.new_context(variables)))
            context = template.new_context(variables)
            # The subject block renders where it stands; blank it so it is never in the body.
            # Blocks a parent template adds later go after ours, so ours still wins.
            context.blocks["subject"] = [_empty_block]
            body = "".join(template.root_render_func(context))
        except Exception:
            template.environment.handle_exception()
    except jinja2.UndefinedError as exc:
        _raise_template_error(
            f"template {name!r} uses an undefined variable{_where_failed(exc)}: {exc.message}",
            name,
            exc,
        )
    except jinja2.TemplateError as exc:
        _raise_template_error(
            f"template {name!r} failed{_where_failed(exc)}: {exc.message}", name, exc
        )
    return body, subject


def _raise_template_error(message: str, name: str, exc: BaseException) -> NoReturn:
    raise TemplateError(message, template=name) from exc
