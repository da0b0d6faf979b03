"""One split's row problems as a user should read them: the root problem first.

A mapping that names a column no row has makes every row fail the same way; one problem at the
mapping, with the columns there are, says it, and the rows' own copies are left out. Golds that
are all out of range in one numbering but would all fit the other (0- vs 1-based) get the hint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .items import ItemError
from .normalize import FieldMapping, did_you_mean

__all__ = ["RowShape", "missing_columns", "report_rows"]


@dataclass
class RowShape:
    """What a whole split's rows look like: every column seen, and each row's gold."""

    columns: set[str] = field(default_factory=set)
    golds: list[tuple[Any, int]] = field(default_factory=list)  # (gold as written, options)
    rows: int = 0

    def add(self, row: Mapping[str, Any], gold: tuple[Any, int] | None) -> None:
        self.rows += 1
        self.columns.update(str(k) for k in row)
        if gold is not None:
            self.golds.append(gold)


def _mapped(mapping: FieldMapping) -> list[tuple[str, str]]:
    """(item field, row path) for every path the mapping reads (the default id is optional)."""
    m = mapping
    mapped = [("question", m.question), ("answer", m.answer), ("context", m.context),
              ("payload", m.payload), ("labels", m.labels)]
    if m.id is not None and m.id != "id":
        mapped.append(("id", m.id))
    choices = m.choices if isinstance(m.choices, tuple) else (m.choices,)
    mapped += [("choices", p) for p in choices] + [("metadata", p) for p in m.metadata]
    return [(key, path) for key, path in mapped if path is not None]


def missing_columns(mapping: FieldMapping, columns: set[str]) -> list[tuple[str, str]]:
    """(item field, row path) of each mapped path whose column no row has."""
    if not columns:
        return []
    return [(key, path) for key, path in _mapped(mapping) if path.split(".")[0] not in columns]


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _numbering_hint(mapping: FieldMapping, golds: list[tuple[Any, int]]) -> str | None:
    """The hint when every gold would name an option in the other numbering."""
    numbers = [(_as_int(gold), n) for gold, n in golds]
    if not numbers or any(g is None for g, _ in numbers):
        return None
    fmt = mapping.answer_format
    if fmt in ("index", "auto") and all(1 <= g <= n for g, n in numbers):  # type: ignore
        return ("every row's gold is between 1 and its number of options: if they count from "
                "1, set fields.answer_format: index1")
    if fmt == "index1" and all(0 <= g < n for g, n in numbers):  # type: ignore[operator]
        return ("every row's gold is between 0 and one less than its number of options: if "
                "they count from 0, set fields.answer_format: index")
    return None


def report_rows(errors: Iterable[ItemError], *, mapping: FieldMapping | None,
                shape: RowShape, source: str, where: str,
                line_of: Callable[..., str | None], hooked: bool,
                root_error: type[ItemError] = ItemError) -> list[ItemError]:
    """The split's problems in the order to read them (root problems first, their per-row
    copies left out, hints added). ``hooked``: rows pass a preprocess hook, whose output
    columns are not the file's, so only the numbering hint is skipped too."""
    errors = list(errors)
    if mapping is None or hooked:
        return errors
    roots, covered = [], set()
    for key, path in missing_columns(mapping, shape.columns):
        column = path.split(".")[0]
        copies = [e for e in errors if e.field in (path, f"metadata.{path}")]
        covered.update((path, f"metadata.{path}"))
        roots.append(root_error(
            f"no row of {source} has a column {column!r} (the {key} mapping)"
            f"{did_you_mean(column, sorted(shape.columns))}; columns: "
            + ", ".join(sorted(shape.columns))
            + (f" (the {len(copies)} rows that lack it are not listed one by one)"
               if len(copies) > 1 else ""),
            source=where, field=f"dataset_kwargs.fields.{key}",
            line=line_of("dataset_kwargs", "fields", key) or line_of("dataset_kwargs", "fields")
            or line_of("dataset_kwargs")))
    hint = _numbering_hint(mapping, shape.golds)
    rest = []
    for err in errors:
        if err.field in covered:
            continue
        if hint and err.field == mapping.answer and "does not name one of" in err.reason:
            err = type(err)(f"{err.reason}; {hint}", source=err.source, item=err.item,
                            field=err.field, line=err.line)
        rest.append(err)
    return roots + rest
