"""The normalized multiple-choice item every CGR component consumes.

Rows from any dataset become :class:`MCQAItem` once, at load time (see ``normalize``); prompts,
programs and scorers only ever see this shape, never the raw row.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

LETTERS = string.ascii_uppercase
MAX_CHOICES = len(LETTERS)

__all__ = ["LETTERS", "ItemError", "MCQAItem", "check_unique_ids"]


class ItemError(ValueError):
    """A dataset row that cannot become an item; names the file, the item and the field."""

    def __init__(self, message: str, *, source: str | None = None, item: str | None = None,
                 field: str | None = None) -> None:
        self.source, self.item, self.field, self.reason = source, item, field, message
        where = []
        if source:
            where.append(str(source))
        if item is not None:
            where.append(f"item {item}")
        if field:
            where.append(f"field {field!r}")
        super().__init__(f"{': '.join(where)}: {message}" if where else message)

    def located(self, *, source: str | None = None, item: str | None = None) -> ItemError:
        """This error with more location filled in (inner code knows the field, outer the file)."""
        return ItemError(self.reason, source=self.source or source,
                         item=self.item if self.item is not None else item, field=self.field)


@dataclass(frozen=True)
class MCQAItem:
    """One multiple-choice question with lettered choices and a gold letter."""

    id: str
    dataset: str
    question: str
    choices: tuple[str, ...]
    answer: str
    context: str | None = None
    payload: Any = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))
        object.__setattr__(self, "metadata", dict(self.metadata or {}))
        self.validate()

    # -- validation ------------------------------------------------------------------------
    def validate(self) -> None:
        item = self.id if isinstance(self.id, str) and self.id else None
        if not isinstance(self.id, str) or not self.id.strip():
            raise ItemError(f"must be a non-empty string, got {self.id!r}", field="id")
        for name in ("dataset", "question"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ItemError(f"must be a non-empty string, got {value!r}", item=item,
                                field=name)
        if len(self.choices) < 2:
            raise ItemError(f"needs at least two choices, got {len(self.choices)}", item=item,
                            field="choices")
        if len(self.choices) > MAX_CHOICES:
            raise ItemError(f"has {len(self.choices)} choices; at most {MAX_CHOICES} can be "
                            "lettered", item=item, field="choices")
        for i, choice in enumerate(self.choices):
            if not isinstance(choice, str) or not choice.strip():
                raise ItemError(f"choice {i} must be a non-empty string, got {choice!r}",
                                item=item, field="choices")
        if not isinstance(self.answer, str) or self.answer not in self.letters:
            raise ItemError(f"gold {self.answer!r} is not one of the choice letters "
                            f"{''.join(self.letters)}", item=item, field="answer")
        if self.context is not None and not isinstance(self.context, str):
            raise ItemError(f"must be a string or null, got {type(self.context).__name__}",
                            item=item, field="context")
        try:
            json.dumps(self.payload)
            json.dumps(self.metadata)
        except (TypeError, ValueError) as err:
            raise ItemError(f"payload and metadata must be JSON-serializable ({err})",
                            item=item, field="payload") from None

    # -- views -----------------------------------------------------------------------------
    @property
    def letters(self) -> tuple[str, ...]:
        return tuple(LETTERS[: len(self.choices)])

    @property
    def answer_index(self) -> int:
        return LETTERS.index(self.answer)

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
        return out

    def to_doc(self) -> dict[str, Any]:
        """The lm-eval document: flat, Arrow-friendly columns (structured parts as JSON text)."""
        return {
            "id": self.id, "dataset": self.dataset, "question": self.question,
            "choices": list(self.choices), "letters": list(self.letters),
            "answer": self.answer, "context": self.context or "",
            "payload_json": json.dumps(self.payload, ensure_ascii=False),
            "metadata_json": json.dumps(self.metadata, ensure_ascii=False, sort_keys=True),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> MCQAItem:
        if not isinstance(obj, Mapping):
            raise ItemError(f"expected a JSON object, got {type(obj).__name__}")
        missing = [k for k in ("id", "dataset", "question", "choices", "answer") if k not in obj]
        if missing:
            raise ItemError("missing required field", item=_item_name(obj), field=missing[0])
        unknown = sorted(set(obj) - {"id", "dataset", "question", "choices", "answer",
                                     "context", "payload", "metadata"})
        if unknown:
            raise ItemError("unknown field (allowed: id, dataset, question, choices, answer, "
                            "context, payload, metadata)", item=_item_name(obj), field=unknown[0])
        choices = obj["choices"]
        if not isinstance(choices, list | tuple):
            raise ItemError(f"must be a list, got {type(choices).__name__}",
                            item=_item_name(obj), field="choices")
        metadata = obj.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise ItemError(f"must be an object, got {type(metadata).__name__}",
                            item=_item_name(obj), field="metadata")
        return cls(id=obj["id"], dataset=obj["dataset"], question=obj["question"],
                   choices=tuple(choices), answer=obj["answer"], context=obj.get("context"),
                   payload=obj.get("payload"), metadata=metadata)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> MCQAItem:
        """Rebuild the item from an lm-eval ``Instance.doc`` (never from the prompt text)."""
        return cls(id=doc["id"], dataset=doc["dataset"], question=doc["question"],
                   choices=tuple(doc["choices"]), answer=doc["answer"],
                   context=doc.get("context") or None,
                   payload=json.loads(doc.get("payload_json") or "null"),
                   metadata=json.loads(doc.get("metadata_json") or "{}"))


def _item_name(obj: Mapping[str, Any]) -> str | None:
    value = obj.get("id")
    return str(value) if value is not None else None


def check_unique_ids(items: Iterable[MCQAItem], source: str | None = None) -> None:
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise ItemError("duplicate id", source=source, item=item.id, field="id")
        seen.add(item.id)
