"""The normalized multiple-choice item every CGR component consumes.

Rows from any dataset become :class:`MCQAItem` once, at load time (see ``normalize``); prompts,
programs and scorers only ever see this shape, never the raw row.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import CGRError

LETTERS = string.ascii_uppercase
MAX_CHOICES = len(LETTERS)

__all__ = ["LETTERS", "ItemError", "MCQAItem", "check_unique_ids", "default_letters",
           "field_problems"]


class ItemError(CGRError):
    """A dataset row that cannot become an item; names the file, the line, the item and the field.

    Printed as ``FILE:LINE: item ID: field 'X': message``, each part only when known; ``line`` is
    the place in the file (``line 3`` of a JSONL/CSV file, ``row 3`` of a Parquet file or hub
    split, ``element 3`` of a JSON list).
    """

    def __init__(self, message: str, *, source: str | None = None, item: str | None = None,
                 field: str | None = None, line: str | None = None,
                 kind: str | None = None) -> None:
        self.source, self.item, self.field, self.reason = source, item, field, message
        self.line = line
        # what problems of one sort share when their messages differ ("duplicate id" for
        # "duplicate id (first at line 3)"), so a report can group them; None: the message
        self.kind = kind
        where = []
        if source and line:
            where.append(f"{source}:{line}")
        elif source or line:
            where.append(str(source or line))
        if item is not None:
            where.append(f"item {item}")
        if field:
            where.append(f"field {field!r}")
        super().__init__(f"{': '.join(where)}: {message}" if where else message)

    def located(self, *, source: str | None = None, item: str | None = None,
                line: str | None = None) -> ItemError:
        """This error with more location filled in (inner code knows the field, outer the file)."""
        return type(self)(self.reason, source=self.source or source,
                          item=self.item if self.item is not None else item, field=self.field,
                          line=self.line or line, kind=self.kind)


def default_letters(n: int) -> tuple[str, ...]:
    """A, B, C, ... for ``n`` choices (at most 26)."""
    return tuple(LETTERS[:n])


def field_problems(*, id: Any = None, dataset: Any = None, question: Any = None,
                   choices: Sequence[Any] | None = None, letters: Sequence[Any] | None = None,
                   answer: Any = None, context: Any = None, payload: Any = None,
                   metadata: Any = None, check: Iterable[str] = ()) -> list[ItemError]:
    """Every problem of the item fields named in ``check`` (an item's own validation).

    The normalizer calls this with just the fields it could read from a row, so a row with
    several faults reports all of them; ``letters`` is the item's letter scheme (None: A, B, ...).
    """
    check = set(check)
    item = id if isinstance(id, str) and id.strip() else None
    out: list[ItemError] = []
    if "id" in check and (not isinstance(id, str) or not id.strip()):
        out.append(ItemError(f"must be a non-empty string, got {id!r}", field="id"))
    for name, value in (("dataset", dataset), ("question", question)):
        if name in check and (not isinstance(value, str) or not value.strip()):
            out.append(ItemError(f"must be a non-empty string, got {value!r}", item=item,
                                 field=name))
    labels: tuple[Any, ...] | None = None
    if "choices" in check and choices is not None:
        n = len(choices)
        if n < 2:
            out.append(ItemError(f"needs at least two choices, got {n}", item=item,
                                 field="choices"))
        for i, choice in enumerate(choices):
            if not isinstance(choice, str) or not choice.strip():
                out.append(ItemError(f"choice {i} must be a non-empty string, got {choice!r}",
                                     item=item, field="choices"))
        if letters is None or not len(letters):
            if n > MAX_CHOICES:
                out.append(ItemError(f"has {n} choices; at most {MAX_CHOICES} can be lettered "
                                     "A-Z (set dataset_kwargs.letters: numbers)", item=item,
                                     field="choices"))
            labels = default_letters(n)
        else:
            labels = tuple(letters)
            out.extend(_letter_problems(labels, n, item))
    if "answer" in check and labels is not None and (
            not isinstance(answer, str) or answer not in labels):
        out.append(ItemError(f"gold {answer!r} is not one of the choice letters "
                             f"{_show(labels)}", item=item, field="answer"))
    if "context" in check and context is not None and not isinstance(context, str):
        out.append(ItemError(f"must be a string or null, got {type(context).__name__}",
                             item=item, field="context"))
    for name, value in (("payload", payload), ("metadata", metadata)):
        if name in check:
            try:
                json.dumps(value)
            except (TypeError, ValueError) as err:
                out.append(ItemError(f"{name} must be JSON-serializable ({err})", item=item,
                                     field=name))
    return out


def _letter_problems(labels: tuple[Any, ...], n: int, item: str | None) -> list[ItemError]:
    if len(labels) != n:
        return [ItemError(f"{len(labels)} letters for {n} choices", item=item, field="letters")]
    bad = [x for x in labels if not isinstance(x, str) or not x or x != x.strip()
           or any(c.isspace() for c in x) or x != x.upper()]
    if bad:
        return [ItemError(f"letter {bad[0]!r} must be a non-empty label without spaces that "
                          "upper-casing leaves unchanged (A, 1, IV)", item=item,
                          field="letters")]
    if len(set(labels)) != len(labels):
        return [ItemError(f"letters {list(labels)} repeat a label", item=item, field="letters")]
    return []


def _show(labels: Sequence[str]) -> str:
    return "".join(labels) if all(len(x) == 1 for x in labels) else ", ".join(labels)


@dataclass(frozen=True)
class MCQAItem:
    """One multiple-choice question with lettered choices and a gold letter.

    ``letters`` label the choices: A, B, C, ... unless the dataset chose another scheme
    (``1, 2, 3``, or its own labels); ``answer`` is one of them. ``examples`` are solved items
    shown before this one in the direct prompt (lm-eval's ``num_fewshot``); empty by default.
    """

    id: str
    dataset: str
    question: str
    choices: tuple[str, ...]
    answer: str
    context: str | None = None
    payload: Any = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    letters: tuple[str, ...] = ()
    examples: tuple[MCQAItem, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))
        object.__setattr__(self, "metadata", dict(self.metadata or {}))
        object.__setattr__(self, "letters", tuple(self.letters or ())
                           or default_letters(len(self.choices)))
        object.__setattr__(self, "examples", tuple(self.examples or ()))
        self.validate()

    # -- validation ------------------------------------------------------------------------
    def validate(self) -> None:
        problems = field_problems(
            id=self.id, dataset=self.dataset, question=self.question, choices=self.choices,
            letters=None if self.default_letters else self.letters, answer=self.answer,
            context=self.context, payload=self.payload, metadata=self.metadata,
            check=("id", "dataset", "question", "choices", "answer", "context", "payload",
                   "metadata"))
        if problems:
            raise problems[0]
        for example in self.examples:
            if not isinstance(example, MCQAItem):
                raise ItemError(f"few-shot examples must be items, got {type(example).__name__}",
                                item=self.id, field="examples")

    # -- views -----------------------------------------------------------------------------
    @property
    def answer_index(self) -> int:
        return self.letters.index(self.answer)

    @property
    def default_letters(self) -> bool:
        return self.letters == default_letters(len(self.choices))

    def to_json(self) -> dict[str, Any]:
        """The bundle's on-disk form (one JSON object per line)."""
        out: dict[str, Any] = {
            "id": self.id, "dataset": self.dataset, "question": self.question,
            "choices": list(self.choices), "answer": self.answer,
        }
        if self.context is not None:
            out["context"] = self.context
        if self.payload is not None:
            out["payload"] = self.payload
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        if not self.default_letters:
            out["letters"] = list(self.letters)
        if self.examples:
            out["examples"] = [example.to_json() for example in self.examples]
        return out

    def to_doc(self) -> dict[str, Any]:
        """The lm-eval document: flat, Arrow-friendly columns (structured parts as JSON text)."""
        doc = {
            "id": self.id, "dataset": self.dataset, "question": self.question,
            "choices": list(self.choices), "letters": list(self.letters),
            "answer": self.answer, "context": self.context or "",
            "payload_json": json.dumps(self.payload, ensure_ascii=False),
            "metadata_json": json.dumps(self.metadata, ensure_ascii=False, sort_keys=True),
        }
        if self.examples:
            doc["examples_json"] = json.dumps([e.to_json() for e in self.examples],
                                              ensure_ascii=False)
        return doc

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> MCQAItem:
        if not isinstance(obj, Mapping):
            raise ItemError(f"expected a JSON object, got {type(obj).__name__}")
        missing = [k for k in ("id", "dataset", "question", "choices", "answer") if k not in obj]
        if missing:
            raise ItemError("missing required field", item=_item_name(obj), field=missing[0])
        unknown = sorted(set(obj) - set(_JSON_FIELDS))
        if unknown:
            raise ItemError(f"unknown field (allowed: {', '.join(_JSON_FIELDS)})",
                            item=_item_name(obj), field=unknown[0])
        choices = obj["choices"]
        if not isinstance(choices, list | tuple):
            raise ItemError(f"must be a list, got {type(choices).__name__}",
                            item=_item_name(obj), field="choices")
        metadata = obj.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise ItemError(f"must be an object, got {type(metadata).__name__}",
                            item=_item_name(obj), field="metadata")
        for name in ("letters", "examples"):
            if not isinstance(obj.get(name, []), list | tuple):
                raise ItemError(f"must be a list, got {type(obj[name]).__name__}",
                                item=_item_name(obj), field=name)
        return cls(id=obj["id"], dataset=obj["dataset"], question=obj["question"],
                   choices=tuple(choices), answer=obj["answer"], context=obj.get("context"),
                   payload=obj.get("payload"), metadata=metadata,
                   letters=tuple(obj.get("letters") or ()),
                   examples=tuple(cls.from_json(e) for e in obj.get("examples") or ()))

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> MCQAItem:
        """Rebuild the item from an lm-eval ``Instance.doc`` (never from the prompt text)."""
        examples = json.loads(doc.get("examples_json") or "[]")
        return cls(id=doc["id"], dataset=doc["dataset"], question=doc["question"],
                   choices=tuple(doc["choices"]), answer=doc["answer"],
                   context=doc.get("context") or None,
                   payload=json.loads(doc.get("payload_json") or "null"),
                   metadata=json.loads(doc.get("metadata_json") or "{}"),
                   letters=tuple(doc.get("letters") or ()),
                   examples=tuple(cls.from_json(e) for e in examples))


_JSON_FIELDS = ("id", "dataset", "question", "choices", "answer", "context", "payload",
                "metadata", "letters", "examples")


def _item_name(obj: Mapping[str, Any]) -> str | None:
    value = obj.get("id")
    return str(value) if value is not None else None


def check_unique_ids(items: Iterable[MCQAItem], source: str | None = None) -> None:
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise ItemError("duplicate id", source=source, item=item.id, field="id")
        seen.add(item.id)
