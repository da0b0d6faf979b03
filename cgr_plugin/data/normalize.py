"""Turn dataset rows into :class:`~cgr_plugin.items.MCQAItem` by a declared field mapping.

A task YAML declares the mapping under ``dataset_kwargs.fields``; rows of odd shape first pass
through a ``preprocess: !function module.fn`` hook that returns a plain mapping.

Both the mapping and each row report *every* problem they find (``FieldMapping.parse``,
``Normalizer.check``): ``cgr validate-dataset`` prints them all, a run stops on the first.
"""

from __future__ import annotations

import difflib
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from .items import LETTERS, ItemError, MCQAItem, field_problems

__all__ = ["ANSWER_FORMATS", "LETTER_SCHEMES", "FieldMapping", "Normalizer", "closest",
           "did_you_mean", "parse_letters"]

ANSWER_FORMATS = ("auto", "letter", "index", "index1", "label", "text", "one_hot")
# Named letter schemes; a list of labels is a scheme of its own.
LETTER_SCHEMES: dict[str, tuple[str, ...]] = {
    "upper": tuple(LETTERS),
    "numbers": tuple(str(i) for i in range(1, 101)),
}
_MISSING = object()


def closest(word: str, options: Sequence[str]) -> str | None:
    """The option closest to a misspelt ``word``, if any is close."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word: str, options: Sequence[str]) -> str:
    """``; did you mean 'x'?`` for a close match among ``options``, else an empty string."""
    close = closest(word, options)
    return f"; did you mean {close!r}?" if close else ""


def parse_letters(value: Any) -> tuple[tuple[str, ...] | None, str | None]:
    """``dataset_kwargs.letters`` as ``(scheme, None)`` or ``(None, problem)``; None is A-Z."""
    if value is None or value == "upper":
        return None, None
    if isinstance(value, str):
        if value in LETTER_SCHEMES:
            return LETTER_SCHEMES[value], None
        return None, (f"unknown letter scheme {value!r}{did_you_mean(value, list(LETTER_SCHEMES))}"
                      f" (one of {', '.join(LETTER_SCHEMES)}, or a list of labels such as "
                      "[W, X, Y, Z])")
    if isinstance(value, list) and value:
        labels = [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        bad = [v for v in labels if not isinstance(v, str) or not v.strip() or v != v.strip()
               or any(c.isspace() for c in v) or v != v.upper()]
        if bad:
            return None, (f"letter {bad[0]!r} must be a non-empty label without spaces that "
                          "upper-casing leaves unchanged (answers are read case-insensitively): "
                          "A, 1, IV, not a or 'x y'")
        if len(set(labels)) != len(labels):
            return None, f"letters {labels} repeat a label"
        return tuple(labels), None
    return None, (f"must be 'upper', 'numbers' or a non-empty list of labels, got {value!r}")


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
        """The mapping of a ``fields:`` block; raises the first problem (see :meth:`parse`)."""
        mapping, problems = cls.parse(config, source=source)
        if problems or mapping is None:
            raise problems[0]
        return mapping

    @classmethod
    def parse(cls, config: Any, *, source: str | None = None
              ) -> tuple[FieldMapping | None, list[ItemError]]:
        """``(mapping, problems)`` with every problem of the block. Unknown keys are left out of
        the mapping (so rows can still be checked); a bad value makes the mapping None."""
        if config is not None and not isinstance(config, Mapping):
            return None, [ItemError(f"'fields' must be a mapping, got {type(config).__name__}",
                                    source=source, field="fields")]
        config = dict(config or {})
        problems: list[ItemError] = []
        usable = True

        def bad(message: str, key: str, *, fatal: bool = True) -> None:
            nonlocal usable
            problems.append(ItemError(message, source=source, field=f"fields.{key}"))
            usable = usable and not fatal

        allowed = [f.name for f in fields(cls)]
        for key in list(config):
            if key not in allowed:
                bad(f"unknown key{did_you_mean(str(key), allowed)} (allowed: "
                    f"{', '.join(sorted(allowed))})", str(key), fatal=False)
                del config[key]
        for key in ("question", "answer", "id", "context", "payload", "labels"):
            if key in config and not (isinstance(config[key], str)
                                      or (config[key] is None and key != "question")):
                bad(f"must be a field name (dotted path), got {config[key]!r}", key)
        for key in ("choices", "metadata"):
            value = config.get(key)
            if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
                config[key] = tuple(value)
            elif isinstance(value, str):
                config[key] = value if key == "choices" else (value,)
            elif key == "metadata" and value in (None, []):
                config[key] = ()
            elif value is not None:
                bad(f"must be a field name or a list of field names, got {value!r}", key)
                del config[key]
        names = [path.split(".")[-1] for path in config.get("metadata", ())]
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            bad(f"two metadata fields end in {clash[0]!r}; items key metadata by the last path "
                "part", "metadata")
        fmt = config.get("answer_format", "auto")
        if fmt not in ANSWER_FORMATS:
            bad(f"unknown answer_format {fmt!r}{did_you_mean(str(fmt), ANSWER_FORMATS)} (one of "
                f"{', '.join(ANSWER_FORMATS)})", "answer_format")
        elif fmt == "label" and not config.get("labels"):
            bad("answer_format 'label' needs fields.labels (the per-row list of choice labels)",
                "answer_format")
        seed = config.get("shuffle_seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            bad(f"shuffle_seed must be an integer, got {seed!r}", "shuffle_seed")
        for key, path in _answer_copies(config):
            bad(f"maps the answer field {config.get('answer', 'answer')!r} into {key} "
                f"({path!r}): programs see {key}, so they would read the gold; map the answer "
                f"only under fields.answer", key)
        return (cls(**config) if usable else None), problems


def _overlaps(path: str, other: str) -> bool:
    """One dotted path is the other or lies inside it (``a`` holds ``a.b``)."""
    return path == other or path.startswith(other + ".") or other.startswith(path + ".")


def _answer_copies(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(key, path)`` of each field programs see (context, payload, metadata) that is, holds
    or lies inside the answer field."""
    answer = config.get("answer", "answer")
    if not isinstance(answer, str):
        return []
    seen = [("context", config.get("context")), ("payload", config.get("payload")),
            *(("metadata", path) for path in config.get("metadata") or ())]
    return [(key, path) for key, path in seen
            if isinstance(path, str) and _overlaps(path, answer)]


@dataclass
class Normalizer:
    """Callable row -> MCQAItem for one dataset split.

    ``letters`` is the dataset's letter scheme (None: A, B, C, ...); an item with n choices is
    labelled with its first n labels.
    """

    dataset: str
    mapping: FieldMapping = field(default_factory=FieldMapping)
    preprocess: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
    split: str = "test"
    letters: tuple[str, ...] | None = None

    def __call__(self, row: Mapping[str, Any], index: int) -> MCQAItem:
        item, problems = self.check(row, index)
        if problems:
            raise problems[0]
        assert item is not None
        return item

    def check(self, row: Mapping[str, Any], index: int
              ) -> tuple[MCQAItem | None, list[ItemError]]:
        """``(item, [])``, or ``(None, problems)`` with every problem of this row."""
        if self.preprocess is not None:
            row, problem = self._preprocessed(row, index)
            if problem is not None:
                return None, [problem]
        problems: list[ItemError] = []
        try:
            item_id: str | None = self._item_id(row, index)
        except ItemError as err:
            problems.append(ItemError(err.reason, field=err.field, item=None))
            item_id = None  # the problems of this row are known by its line
        values = self._read_fields(row, item_id, problems)
        problems += self._item_problems(values, item_id)
        if problems:
            return None, problems
        return self._build(values, item_id)

    def _preprocessed(self, row: Mapping[str, Any], index: int
                      ) -> tuple[Mapping[str, Any], ItemError | None]:
        """The row after the preprocess hook, or the hook's failure as the row's problem."""
        assert self.preprocess is not None
        name = self._raw_name(row, index)  # named like the row's other problems: by its id
        try:
            done = self.preprocess(row)
        except ItemError as err:
            return row, err.located(item=name)
        except Exception as err:  # a user hook failing is a data error, with its row named
            return row, ItemError(f"preprocess function failed: {type(err).__name__}: {err}",
                                  item=name)
        if not isinstance(done, Mapping):
            return row, ItemError(f"preprocess must return a mapping, got {type(done).__name__}",
                                  item=name)
        return done, None

    def _read_fields(self, row: Mapping[str, Any], item_id: str | None,
                     problems: list[ItemError]) -> dict[str, Any]:
        """Each item field read from the row through the mapping (_MISSING where it failed,
        with the reason in ``problems``)."""
        m = self.mapping

        def read(fn: Callable[..., Any], *args: Any) -> Any:
            try:
                return fn(*args)
            except ItemError as err:
                problems.append(err.located(item=item_id))
                return _MISSING

        question = read(self._required, row, m.question, "question", item_id)
        if question is not _MISSING and not isinstance(question, str):
            problems.append(ItemError(f"must be a string, got {type(question).__name__}",
                                      item=item_id, field=m.question))
            question = _MISSING
        choices = read(self._choices, row, item_id, problems)
        letters = None
        if choices is not _MISSING:
            letters = read(self._letters_for, len(choices), item_id)
        gold = _MISSING
        if choices is not _MISSING and letters is not _MISSING:
            gold = read(self._gold_index, row, choices, letters, item_id)
        else:
            read(self._required, row, m.answer, "answer", item_id)
        context = read(self._optional, row, m.context, "context", item_id)
        payload = read(self._optional, row, m.payload, "payload", item_id)
        metadata = {}
        for path in m.metadata:
            value = _lookup(row, path)
            if value is _MISSING:
                problems.append(ItemError(f"metadata field {path!r} missing from row",
                                          item=item_id, field=f"metadata.{path}"))
            else:
                metadata[path.split(".")[-1]] = value
        return {"question": question, "choices": choices, "letters": letters, "gold": gold,
                "context": context, "payload": payload, "metadata": metadata}

    def _item_problems(self, values: dict[str, Any], item_id: str | None) -> list[ItemError]:
        """The item's own checks, on whatever could be read, named by the row's field."""
        m = self.mapping
        source_field = {"id": m.id or "id", "question": m.question, "answer": m.answer,
                        "choices": m.choices if isinstance(m.choices, str)
                        else ", ".join(m.choices),
                        "context": m.context, "payload": m.payload, "metadata": "metadata",
                        "letters": "letters"}
        pieces: dict[str, Any] = {"dataset": self.dataset, "metadata": values["metadata"]}
        if item_id is not None:
            pieces["id"] = item_id
        if values["question"] is not _MISSING:
            pieces["question"] = values["question"]
        if values["choices"] is not _MISSING and values["letters"] is not _MISSING:
            pieces["choices"], pieces["letters"] = values["choices"], values["letters"]
        if values["context"] is not _MISSING:
            pieces["context"] = values["context"] if values["context"] else None
        if values["payload"] is not _MISSING:
            pieces["payload"] = values["payload"]
        checks = [k for k in pieces if k != "letters"]
        return [ItemError(err.reason, item=item_id,
                          field=source_field.get(err.field or "") or err.field)
                for err in field_problems(**pieces, check=checks)]

    def _build(self, values: dict[str, Any], item_id: str | None
               ) -> tuple[MCQAItem | None, list[ItemError]]:
        """The item from fields that passed every check (choices shuffled if asked)."""
        choices, gold, letters = values["choices"], values["gold"], values["letters"]
        if self.mapping.shuffle_seed is not None:
            order = list(range(len(choices)))
            random.Random(f"{self.mapping.shuffle_seed}:{item_id}").shuffle(order)
            choices = [choices[i] for i in order]
            gold = order.index(gold)
        labels = letters or tuple(LETTERS[: len(choices)])
        try:
            return MCQAItem(id=item_id, dataset=self.dataset, question=values["question"],
                            choices=tuple(choices), answer=labels[gold],
                            context=values["context"] or None, payload=values["payload"],
                            metadata=values["metadata"], letters=letters or ()), []
        except ItemError as err:
            return None, [err.located(item=item_id)]

    def raw_gold(self, row: Mapping[str, Any]) -> tuple[Any, int] | None:
        """(the row's gold as written, its number of options), or None where either cannot be
        read; for hints that need every row (a 0- vs 1-based gold). Rows before any hook."""
        gold = _lookup(row, self.mapping.answer)
        spec = self.mapping.choices
        if isinstance(spec, tuple):
            count = sum(1 for path in spec if _lookup(row, path) not in (_MISSING, None))
        else:
            values = _lookup(row, spec)
            ok = isinstance(values, Sequence) and not isinstance(values, str)
            count = len(values) if ok else 0
        return None if gold is _MISSING or not count else (gold, count)

    # -- pieces ----------------------------------------------------------------------------
    def _raw_name(self, row: Mapping[str, Any], index: int) -> str:
        """The id the raw row would give its item (before the hook), else its position."""
        try:
            return self._item_id(row, index) if isinstance(row, Mapping) else str(index)
        except ItemError:
            return str(index)

    def _item_id(self, row: Mapping[str, Any], index: int) -> str:
        if self.mapping.id is not None:
            value = _lookup(row, self.mapping.id)
            if value is not _MISSING and value is not None and str(value).strip():
                return str(value)
            if self.mapping.id != "id":  # an explicit id field must be there
                raise ItemError("missing id", item=str(index), field=self.mapping.id)
        return f"{self.dataset}/{self.split}/{index}"

    def _letters_for(self, n: int, item_id: str | None) -> tuple[str, ...] | None:
        if self.letters is None:
            return None
        if n > len(self.letters):
            raise ItemError(f"has {n} choices but the letter scheme has only "
                            f"{len(self.letters)} labels ({', '.join(self.letters)})",
                            item=item_id, field="letters")
        return tuple(self.letters[:n])

    @staticmethod
    def _required(row: Mapping[str, Any], path: str, name: str, item_id: str | None) -> Any:
        value = _lookup(row, path)
        if value is _MISSING or value is None:
            raise ItemError(f"missing required field for {name}", item=item_id, field=path)
        return value

    @staticmethod
    def _optional(row: Mapping[str, Any], path: str | None, name: str, item_id: str | None) -> Any:
        if path is None:
            return None
        value = _lookup(row, path)
        if value is _MISSING:
            raise ItemError(f"field mapped to {name} missing from row", item=item_id, field=path)
        return value

    def _choices(self, row: Mapping[str, Any], item_id: str | None, problems: list[ItemError]
                 ) -> list[str]:
        spec = self.mapping.choices
        if isinstance(spec, tuple):
            values = []
            for path in spec:  # every missing option field, not just the first
                try:
                    values.append(self._required(row, path, "choices", item_id))
                except ItemError as err:
                    problems.append(err)
            if len(values) < len(spec):
                return _MISSING  # type: ignore[return-value]
            where = ", ".join(spec)
        else:
            values = self._required(row, spec, "choices", item_id)
            where = spec
            if not isinstance(values, Sequence) or isinstance(values, str):
                raise ItemError(f"must be a list of strings, got {type(values).__name__}",
                                item=item_id, field=where)
            values = list(values)
        wrong = False
        for i, value in enumerate(values):
            if isinstance(value, int | float) and not isinstance(value, bool):
                values[i] = str(value)  # numeric options ("4", "12") are common in math sets
            elif not isinstance(value, str):
                problems.append(ItemError(f"choice {i} must be a string, got "
                                          f"{type(value).__name__}", item=item_id, field=where))
                wrong = True
        return _MISSING if wrong else values  # type: ignore[return-value]

    def _gold_index(self, row: Mapping[str, Any], choices: list[str],
                    letters: tuple[str, ...] | None, item_id: str | None) -> int:
        m = self.mapping
        raw = self._required(row, m.answer, "answer", item_id)
        fmt = m.answer_format
        scheme = letters or tuple(LETTERS[: len(choices)])
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
            fmt = self._auto_format(raw, labels, letters, item_id)
        n = len(choices)
        gold: int | None = None
        if fmt == "letter" and isinstance(raw, str | int) and not isinstance(raw, bool):
            said = str(raw).strip().upper()
            gold = scheme.index(said) if said in scheme else None
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
            shown = f"; the letters are {', '.join(scheme)}" if fmt == "letter" else ""
            raise ItemError(f"gold {raw!r} ({fmt}) does not name one of {n} choices{shown}",
                            item=item_id, field=m.answer)
        return gold

    def _auto_format(self, raw: Any, labels: list[str] | None,
                     letters: tuple[str, ...] | None, item_id: str | None) -> str:
        m = self.mapping
        if labels is not None:
            return "label"
        if isinstance(raw, bool):
            return "invalid"
        if isinstance(raw, str) and self.letters is not None \
                and raw.strip().upper() in self.letters:
            return "letter"  # a gold written in the dataset's own letter scheme
        if isinstance(raw, int):
            if self.letters is not None and self.letters[0].isdigit():
                raise ItemError(f"gold {raw!r} is a number and the letters are numbers: set "
                                "fields.answer_format to index (0-based), index1 (1-based) or "
                                "letter (the label itself)", item=item_id, field=m.answer)
            return "index"
        if isinstance(raw, str) and len(raw.strip()) == 1 and raw.strip().isalpha():
            return "letter"
        raise ItemError(f"cannot tell how gold {raw!r} names a choice; set "
                        "fields.answer_format (letter, index, index1, label, text, one_hot)",
                        item=item_id, field=m.answer)
