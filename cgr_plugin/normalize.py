"""Turn dataset rows into :class:`~cgr_plugin.items.MCQAItem` by a declared field mapping.

A task YAML declares the mapping under ``dataset_kwargs.fields``; rows of odd shape first pass
through a ``preprocess: !function module.fn`` hook that returns a plain mapping.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from .items import LETTERS, ItemError, MCQAItem

__all__ = ["ANSWER_FORMATS", "FieldMapping", "Normalizer"]

ANSWER_FORMATS = ("auto", "letter", "index", "index1", "label", "text", "one_hot")
_MISSING = object()


def _lookup(row: Mapping[str, Any], path: str) -> Any:
    """``a.b.0`` style access into nested mappings and lists; _MISSING when absent."""
    value: Any = row
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part, _MISSING)
        elif isinstance(value, Sequence) and not isinstance(value, str) and part.isdigit():
            value = value[int(part)] if int(part) < len(value) else _MISSING
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


@dataclass(frozen=True)
class FieldMapping:
    """Where each item field lives in a source row (dotted paths; ``choices`` may be a list)."""

    question: str = "question"
    choices: str | tuple[str, ...] = "choices"
    answer: str = "answer"
    id: str | None = "id"
    context: str | None = None
    payload: str | None = None
    metadata: tuple[str, ...] = ()
    labels: str | None = None
    answer_format: str = "auto"
    shuffle_seed: int | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None, *, source: str | None = None
                    ) -> FieldMapping:
        if config is not None and not isinstance(config, Mapping):
            raise ItemError(f"'fields' must be a mapping, got {type(config).__name__}",
                            source=source, field="fields")
        config = dict(config or {})
        allowed = {f.name for f in fields(cls)}
        for key in config:
            if key not in allowed:
                raise ItemError(f"unknown key in 'fields' (allowed: {', '.join(sorted(allowed))})",
                                source=source, field=f"fields.{key}")
        for key in ("question", "answer", "id", "context", "payload", "labels"):
            if key in config and not (isinstance(config[key], str)
                                      or (config[key] is None and key != "question")):
                raise ItemError(f"must be a field name (dotted path), got {config[key]!r}",
                                source=source, field=f"fields.{key}")
        for key in ("choices", "metadata"):
            value = config.get(key)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                config[key] = tuple(value)
            elif isinstance(value, str):
                config[key] = value if key == "choices" else (value,)
            elif value is not None:
                raise ItemError(f"must be a field name or a list of field names, got {value!r}",
                                source=source, field=f"fields.{key}")
        names = [path.split(".")[-1] for path in config.get("metadata", ())]
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise ItemError(f"two metadata fields end in {clash[0]!r}; items key metadata by the "
                            "last path part", source=source, field="fields.metadata")
        fmt = config.get("answer_format", "auto")
        if fmt not in ANSWER_FORMATS:
            raise ItemError(f"unknown answer_format {fmt!r} (one of {', '.join(ANSWER_FORMATS)})",
                            source=source, field="fields.answer_format")
        seed = config.get("shuffle_seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ItemError(f"shuffle_seed must be an integer, got {seed!r}", source=source,
                            field="fields.shuffle_seed")
        return cls(**config)


@dataclass
class Normalizer:
    """Callable row -> MCQAItem for one dataset split."""

    dataset: str
    mapping: FieldMapping = field(default_factory=FieldMapping)
    preprocess: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
    split: str = "test"

    def __call__(self, row: Mapping[str, Any], index: int) -> MCQAItem:
        if self.preprocess is not None:
            try:
                row = self.preprocess(row)
            except ItemError:
                raise
            except Exception as err:  # a user hook failing is a data error, with its row named
                raise ItemError(f"preprocess function failed: {type(err).__name__}: {err}",
                                item=str(index)) from err
            if not isinstance(row, Mapping):
                raise ItemError(f"preprocess must return a mapping, got {type(row).__name__}",
                                item=str(index))
        m = self.mapping
        item_id = self._item_id(row, index)
        question = self._required(row, m.question, "question", item_id)
        choices = self._choices(row, item_id)
        gold = self._gold_index(row, choices, item_id)
        context = self._optional(row, m.context, "context", item_id) or None
        payload = self._optional(row, m.payload, "payload", item_id)
        metadata = {}
        for path in m.metadata:
            value = _lookup(row, path)
            if value is _MISSING:
                raise ItemError(f"metadata field {path!r} missing from row", item=item_id,
                                field=f"metadata.{path}")
            metadata[path.split(".")[-1]] = value
        if m.shuffle_seed is not None:
            order = list(range(len(choices)))
            random.Random(f"{m.shuffle_seed}:{item_id}").shuffle(order)
            choices = [choices[i] for i in order]
            gold = order.index(gold)
        if not isinstance(question, str):
            raise ItemError(f"must be a string, got {type(question).__name__}", item=item_id,
                            field=m.question)
        try:
            return MCQAItem(id=item_id, dataset=self.dataset, question=question,
                            choices=tuple(choices), answer=LETTERS[gold], context=context,
                            payload=payload, metadata=metadata)
        except ItemError as err:
            raise err.located(item=item_id) from None

    # -- pieces ----------------------------------------------------------------------------
    def _item_id(self, row: Mapping[str, Any], index: int) -> str:
        if self.mapping.id is not None:
            value = _lookup(row, self.mapping.id)
            if value is not _MISSING and value is not None and str(value).strip():
                return str(value)
            if self.mapping.id != "id":  # an explicit id field must be there
                raise ItemError("missing id", item=str(index), field=self.mapping.id)
        return f"{self.dataset}/{self.split}/{index}"

    @staticmethod
    def _required(row: Mapping[str, Any], path: str, name: str, item_id: str) -> Any:
        value = _lookup(row, path)
        if value is _MISSING or value is None:
            raise ItemError(f"missing required field for {name}", item=item_id, field=path)
        return value

    @staticmethod
    def _optional(row: Mapping[str, Any], path: str | None, name: str, item_id: str) -> Any:
        if path is None:
            return None
        value = _lookup(row, path)
        if value is _MISSING:
            raise ItemError(f"field mapped to {name} missing from row", item=item_id, field=path)
        return value

    def _choices(self, row: Mapping[str, Any], item_id: str) -> list[str]:
        spec = self.mapping.choices
        if isinstance(spec, tuple):
            values = [self._required(row, path, "choices", item_id) for path in spec]
            where = ", ".join(spec)
        else:
            values = self._required(row, spec, "choices", item_id)
            where = spec
            if not isinstance(values, Sequence) or isinstance(values, str):
                raise ItemError(f"must be a list of strings, got {type(values).__name__}",
                                item=item_id, field=where)
            values = list(values)
        for i, value in enumerate(values):
            if isinstance(value, int | float) and not isinstance(value, bool):
                values[i] = str(value)  # numeric options ("4", "12") are common in math sets
            elif not isinstance(value, str):
                raise ItemError(f"choice {i} must be a string, got {type(value).__name__}",
                                item=item_id, field=where)
        return values

    def _gold_index(self, row: Mapping[str, Any], choices: list[str], item_id: str) -> int:
        m = self.mapping
        raw = self._required(row, m.answer, "answer", item_id)
        fmt = m.answer_format
        labels = None
        if m.labels is not None:
            labels = self._required(row, m.labels, "labels", item_id)
            if not isinstance(labels, Sequence) or isinstance(labels, str):
                raise ItemError("labels must be a list", item=item_id, field=m.labels)
            labels = [str(x) for x in labels]
            if len(labels) != len(choices):
                raise ItemError(f"{len(labels)} labels for {len(choices)} choices", item=item_id,
                                field=m.labels)
        if fmt == "auto":
            if labels is not None:
                fmt = "label"
            elif isinstance(raw, bool):
                fmt = "invalid"
            elif isinstance(raw, int):
                fmt = "index"
            elif isinstance(raw, str) and len(raw.strip()) == 1 and raw.strip().isalpha():
                fmt = "letter"
            else:
                raise ItemError(f"cannot tell how gold {raw!r} names a choice; set "
                                "fields.answer_format (letter, index, index1, label, text, "
                                "one_hot)", item=item_id, field=m.answer)
        n = len(choices)
        gold: int | None = None
        if fmt == "letter" and isinstance(raw, str) and len(raw.strip()) == 1:
            letter = raw.strip().upper()
            gold = LETTERS.index(letter) if letter in LETTERS else None
        elif fmt in ("index", "index1") and isinstance(raw, int | str) and raw is not True \
                and raw is not False:
            try:
                gold = int(raw) - (1 if fmt == "index1" else 0)
            except ValueError:
                gold = None
        elif fmt == "label":
            if labels is None:
                raise ItemError("answer_format 'label' needs fields.labels", item=item_id,
                                field="labels")
            gold = labels.index(str(raw)) if str(raw) in labels else None
        elif fmt == "text":
            matches = [i for i, c in enumerate(choices) if c == str(raw)]
            if len(matches) > 1:
                raise ItemError(f"gold text {raw!r} matches {len(matches)} choices", item=item_id,
                                field=m.answer)
            gold = matches[0] if matches else None
        elif fmt == "one_hot":
            try:
                marks = [int(x) for x in raw] if not isinstance(raw, str | bytes) else None
            except (TypeError, ValueError):
                marks = None
            if marks is None or len(marks) != n or sorted(marks) != [0] * (n - 1) + [1]:
                raise ItemError("one_hot gold must mark exactly one of the choices with 1 and "
                                f"the rest with 0, got {raw!r}", item=item_id, field=m.answer)
            gold = marks.index(1)
        if gold is None or not 0 <= gold < n:
            raise ItemError(f"gold {raw!r} ({fmt}) does not name one of {n} choices",
                            item=item_id, field=m.answer)
        return gold
