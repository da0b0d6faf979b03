"""One Jinja environment for every CGR prompt; user template folders shadow the packaged ones."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from ._paths import TEMPLATES_DIR, user_template_dirs
from .errors import CGRError

__all__ = ["TemplateError", "environment", "render"]


class TemplateError(CGRError):
    """A prompt template that is missing, malformed, or uses an undefined variable."""


@lru_cache(maxsize=8)
def _environment(search_path: tuple[str, ...]) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(list(search_path)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,
    )


def environment(extra_dirs: Sequence[str | Path] = ()) -> jinja2.Environment:
    """Search order: ``extra_dirs``, then ``CGR_TEMPLATES_PATH``, then the packaged templates."""
    dirs = [*map(str, extra_dirs), *map(str, user_template_dirs()), str(TEMPLATES_DIR)]
    return _environment(tuple(dirs))


def render(name: str, extra_dirs: Sequence[str | Path] = (), **variables: Any) -> str:
    """Render a template; failures name the template and the missing variable."""
    env = environment(extra_dirs)
    try:
        template = env.get_template(name)
    except jinja2.TemplateNotFound:
        raise TemplateError(f"template {name!r} not found in: "
                            + ", ".join(str(p) for p in env.loader.searchpath)) from None
    except jinja2.TemplateSyntaxError as err:
        raise TemplateError(f"{err.filename or name}:{err.lineno}: {err.message}") from None
    try:
        return template.render(**variables).strip()
    except jinja2.UndefinedError as err:
        raise TemplateError(f"template {template.filename}: {err.message}") from None
