"""One Jinja environment for every CGR prompt; user template folders shadow the packaged ones.

Templates may use three filters for an item's structured payload (``item.payload``):
``payload_text`` (the compact form prompts show: named values, numbers rounded to
``PAYLOAD_DIGITS`` significant digits), ``payload_shape`` (its keys and lengths, for the generator
prompt) and ``payload_rounded`` (whether the shown text rounded any number). Programs always get
the exact values. :func:`render_prompt` also says what a prompt shortened on purpose, so the
record can say it too.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta

from ._paths import TEMPLATES_DIR, user_template_dirs
from .errors import CGRError

__all__ = ["DEFAULT_GENERATOR_PROMPT", "GENERATOR_FAMILIES", "PAYLOAD_DIGITS", "PayloadText",
           "Prompt", "TemplateError", "environment", "generator_families",
           "generator_template", "payload_shape", "render", "render_payload", "render_prompt",
           "template_hash"]

# Significant digits of the numbers a prompt shows from a payload (programs see exact values).
PAYLOAD_DIGITS = 3


class TemplateError(CGRError):
    """A prompt template that is missing, malformed, or uses an undefined variable."""


@dataclass(frozen=True)
class PayloadText:
    """A payload as prompt text, and how many of its numbers the text shows rounded."""

    text: str
    rounded: int
    numbers: int = 0  # how many numbers the payload holds


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt, and what it shortened on purpose (None: nothing)."""

    text: str
    shortened: str | None = None


# Set while render_prompt() runs: the payload_text filter notes here what it rounded.
_SHORTENED: ContextVar[list[str] | None] = ContextVar("cgr_prompt_shortened", default=None)


def _number(value: float, digits: int) -> tuple[str, bool]:
    """``value`` to ``digits`` significant digits, written without an exponent where short."""
    if isinstance(value, bool):
        return ("true" if value else "false"), False
    if isinstance(value, int) or not math.isfinite(value):
        return str(value), False
    shown = float(f"{value:.{digits}g}")
    text = str(int(shown)) if shown.is_integer() and abs(shown) < 1e15 else repr(shown)
    return text, shown != value


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _rounded_json(value: object, digits: int, counter: list[int]) -> object:
    if _is_number(value):
        text, rounded = _number(value, digits)  # type: ignore[arg-type]
        counter[0] += rounded
        counter[1] += 1
        return json.loads(text) if math.isfinite(value) else text  # type: ignore[arg-type]
    if isinstance(value, Mapping):
        return {str(k): _rounded_json(v, digits, counter) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded_json(v, digits, counter) for v in value]
    return value


def _payload_lines(name: str | None, value: object, indent: str, digits: int,
                   counter: list[int]) -> list[str]:
    label = f"{indent}{name}" if name is not None else indent.rstrip() or "values"
    if isinstance(value, Mapping):
        head = [f"{label}:"] if name is not None else []
        inner = indent + "  " if name is not None else indent
        return head + [line for key, item in value.items()
                       for line in _payload_lines(str(key), item, inner, digits, counter)]
    if isinstance(value, list | tuple) and value and all(_is_number(v) for v in value):
        shown = [_number(v, digits) for v in value]
        counter[0] += sum(rounded for _, rounded in shown)
        counter[1] += len(shown)
        return [f"{label} ({len(value)} values): " + ", ".join(text for text, _ in shown)]
    if _is_number(value):
        text, rounded = _number(value, digits)  # type: ignore[arg-type]
        counter[0] += rounded
        counter[1] += 1
        return [f"{label}: {text}"]
    if isinstance(value, str):
        return [f"{label}: {value}"]
    compact = json.dumps(_rounded_json(value, digits, counter), ensure_ascii=False)
    return [f"{label}: {compact}"]


def render_payload(payload: object, digits: int = PAYLOAD_DIGITS) -> PayloadText:
    """The compact text prompts show for a payload: one line per named value (nested names
    indented), a list of numbers as ``name (N values): 1.75, -3.46, ...``, every number rounded
    to ``digits`` significant digits, and a first line saying so when any number was rounded.
    Nothing is left out; a payload too long for a model's context is the caller's to report."""
    if payload is None:
        return PayloadText("", 0)
    counter = [0, 0]  # numbers rounded, numbers in all
    lines = _payload_lines(None, payload, "", digits, counter)
    head = (f"Data (numbers rounded to {digits} significant digits):" if counter[0]
            else "Data:")
    return PayloadText("\n".join([head, *lines]), counter[0], counter[1])


def _payload_text_filter(payload: object, digits: int = PAYLOAD_DIGITS) -> str:
    shown = render_payload(payload, digits)
    notes = _SHORTENED.get()
    if notes is not None and shown.rounded:
        notes.append(f"payload: {shown.rounded} of {shown.numbers} numbers rounded to {digits} "
                     "significant digits")
    return shown.text


def payload_shape(payload: object) -> str:
    """The payload's keys and lengths, e.g. ``{"series": {"ts": [128 numbers]}}``."""
    if isinstance(payload, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {payload_shape(v)}"
                               for k, v in payload.items()) + "}"
    if isinstance(payload, list | tuple):
        kind = "number" if payload and all(_is_number(v) for v in payload) else "item"
        return f"[{len(payload)} {kind}{'' if len(payload) == 1 else 's'}]"
    if payload is None:
        return "None"
    return {str: "a string", bool: "a bool"}.get(type(payload), "a number")


@lru_cache(maxsize=8)
def _environment(search_path: tuple[str, ...]) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(list(search_path)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,
    )
    env.filters["payload_text"] = _payload_text_filter
    env.filters["payload_rounded"] = lambda payload, digits=PAYLOAD_DIGITS: bool(
        render_payload(payload, digits).rounded)
    env.filters["payload_shape"] = payload_shape
    return env


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


def render_prompt(name: str, extra_dirs: Sequence[str | Path] = (), **variables: Any) -> Prompt:
    """:func:`render`, noting what the prompt shortened on purpose (a payload's numbers shown
    rounded), for the record."""
    token = _SHORTENED.set([])
    try:
        text = render(name, extra_dirs, **variables)
        notes = _SHORTENED.get() or []
    finally:
        _SHORTENED.reset(token)
    return Prompt(text, "; ".join(dict.fromkeys(notes)) or None)


# -- generator prompt families ------------------------------------------------------------------
# Each family is a template generator_NAME.j2 (model_arg generator_prompt=NAME); a user folder
# shadows a shipped family or adds one. See docs/prompts.md for what each asks of the generator.
GENERATOR_FAMILIES = ("cgr", "per_option", "pot", "decompose")
DEFAULT_GENERATOR_PROMPT = "cgr"
_FAMILY_FILE = "generator_{}.j2"


def generator_template(family: str) -> str:
    """The template file of generator prompt family ``family``."""
    return _FAMILY_FILE.format(family)


def generator_families(extra_dirs: Sequence[str | Path] = ()) -> list[str]:
    """Every family the search path has (shipped and users' own), sorted."""
    prefix, suffix = _FAMILY_FILE.split("{}")
    return sorted({name.removeprefix(prefix).removesuffix(suffix)
                   for name in environment(extra_dirs).list_templates()
                   if name.startswith(prefix) and name.endswith(suffix)})


def template_hash(name: str, extra_dirs: Sequence[str | Path] = ()) -> str:
    """sha256 of a template's source and of every template it includes, as found on the search
    path: the same hash, the same prompt text for the same item."""
    env = environment(extra_dirs)
    digest, todo, seen = hashlib.sha256(), [name], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            source = env.loader.get_source(env, current)[0]
        except jinja2.TemplateNotFound:
            raise TemplateError(f"template {current!r} not found in: "
                                + ", ".join(str(p) for p in env.loader.searchpath)) from None
        digest.update(f"{current}\0{source}\0".encode())
        todo += sorted(n for n in jinja2.meta.find_referenced_templates(env.parse(source))
                       if n is not None)
    return digest.hexdigest()
