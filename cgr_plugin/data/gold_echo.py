"""Item fields a program sees that echo the gold answer.

Programs get an item's metadata, context and payload. A field that always equals the gold (its
letter, its option's text, its index) is a copy of the answer and is refused; one that equals
the gold letter or text on most items, well above chance, is a warning. Both name the field.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .items import MCQAItem

__all__ = ["MIN_ITEMS_TO_REFUSE", "GoldEcho", "gold_echoes"]

MIN_ITEMS_TO_REFUSE = 5  # fewer items can agree with the gold by chance
_WARN_FORMS = ("letter", "text")


@dataclass(frozen=True)
class GoldEcho:
    """``field`` (``metadata.KEY``, ``context``, ``payload`` or ``payload.KEY``) equals the
    gold, as ``form``, on ``count`` of ``total`` items."""

    field: str
    form: str
    count: int
    total: int

    @property
    def refused(self) -> bool:
        """Always the gold: a copy of the answer."""
        return self.count == self.total >= MIN_ITEMS_TO_REFUSE

    def describe(self, source: str = "") -> str:
        """``metadata.hint{source} equals the gold letter on 9 of 10 items``."""
        what = {"letter": "the gold letter", "text": "the gold option's text",
                "index": "the gold's 0-based index", "index1": "the gold's 1-based index",
                "one_hot": "the gold as a one-hot list"}[self.form]
        return f"{self.field}{source} equals {what} on {self.count} of {self.total} items"


def _seen_values(item: MCQAItem) -> Iterator[tuple[str, Any]]:
    for key, value in item.metadata.items():
        yield f"metadata.{key}", value
    if item.context is not None:
        yield "context", item.context
    if item.payload is not None:
        yield "payload", item.payload
        if isinstance(item.payload, Mapping):
            for key, value in item.payload.items():
                yield f"payload.{key}", value


def _forms(value: Any, item: MCQAItem) -> list[str]:
    """The forms in which ``value`` names this item's gold."""
    index = item.answer_index
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [form for form, n in (("index", index), ("index1", index + 1)) if value == n]
    if isinstance(value, str):
        said = value.strip()
        out = [form for form, n in (("index", index), ("index1", index + 1)) if said == str(n)]
        if said.upper() == item.answer.upper():
            out.append("letter")
        if said.casefold() == item.choices[index].strip().casefold():
            out.append("text")
        return out
    if isinstance(value, Sequence) and len(value) == len(item.choices):
        marks = [1 if i == index else 0 for i in range(len(item.choices))]
        return ["one_hot"] if list(value) == marks else []
    return []


def _above_chance(count: int, total: int, chance: float) -> bool:
    """Most items, and more than chance agreement explains (3 sd)."""
    spread = 3 * math.sqrt(total * chance * (1 - chance))
    return 2 * count > total and count > total * chance + spread


def gold_echoes(items: Sequence[MCQAItem]) -> list[GoldEcho]:
    """Each (field, form) that is refused or worth a warning, most telling first."""
    counts: Counter[tuple[str, str]] = Counter()
    present: Counter[str] = Counter()
    for item in items:
        for name, value in _seen_values(item):
            present[name] += 1
            for form in _forms(value, item):
                counts[name, form] += 1
    total = len(items)
    chance = sum(1 / len(item.choices) for item in items) / max(total, 1)
    echoes = [GoldEcho(name, form, n, total) for (name, form), n in counts.items()]
    kept = [e for e in echoes if e.refused or (
        e.form in _WARN_FORMS and present[e.field] and _above_chance(e.count, total, chance))]
    return sorted(kept, key=lambda e: (-e.count, e.field, e.form))
