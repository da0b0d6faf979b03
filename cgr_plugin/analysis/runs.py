"""Read lm-eval output folders of cgr runs back into one outcome per item."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import plugins
from ..errors import CGRError
from ..record import SCORED_CHANNELS, CGRRecord

__all__ = ["ItemOutcome", "RunError", "iter_records", "load_runs"]

_SAMPLES = re.compile(r"^samples_(?P<task>.+?)_\d{4}-\d{2}-\d{2}T[\d\-.]+\.jsonl$")


class RunError(CGRError):
    """A run folder without cgr samples, or with lines that are not cgr records."""


@dataclass(frozen=True)
class ItemOutcome:
    run: str
    task: str
    solver: str
    generator: str
    item_id: str
    gold: str
    direct: str | None  # the channel's letter, None when it gave none
    assisted: str | None
    generator_letter: str | None
    fallback: str | None
    control: str | None  # the budget-matched control's letter
    direct_status: str
    assisted_status: str
    generator_status: str
    control_status: str
    direct_calls: int
    assisted_calls: int
    audits: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # channel -> scorer -> value

    @property
    def direct_ok(self) -> bool:
        return self.direct == self.gold

    @property
    def assisted_ok(self) -> bool:
        return self.assisted == self.gold

    @property
    def generator_ok(self) -> bool:
        return self.generator_letter == self.gold

    @property
    def control_ok(self) -> bool:
        return self.control == self.gold

    @property
    def fallback_ok(self) -> bool:
        return (self.assisted or self.fallback) == self.gold

    @property
    def flagged(self) -> bool:
        """A program whose answer may not come from the solver (hard-coding audit)."""
        return bool(self.audits.get("hard_coded"))


def _outcome(run: str, task: str, record: CGRRecord) -> ItemOutcome:
    direct, assisted, own = record.direct, record.assisted, record.generator_side
    return ItemOutcome(
        run=run, task=task, solver=record.solver, generator=record.generator or "-",
        item_id=record.item_id, gold=str(record.gold), direct=direct.answer,
        assisted=assisted.answer, generator_letter=own.answer,
        fallback=(assisted.fallback or {}).get("answer"), control=record.budget_matched.answer,
        direct_status=direct.status, assisted_status=assisted.status,
        generator_status=own.status, control_status=record.budget_matched.status,
        direct_calls=direct.solver_calls, assisted_calls=assisted.solver_calls,
        audits=dict(assisted.audits), scores=_plugin_scores(record))


def _plugin_scores(record: CGRRecord) -> dict[str, dict[str, float]]:
    if not plugins.registry().scorers:
        return {}
    return {view: plugins.score(record, view) for view in SCORED_CHANNELS
            if record.channel(view.removesuffix("_fallback")).status != "not_run"}


def iter_records(folders: Iterable[str | Path]) -> Iterator[tuple[Path, str, CGRRecord]]:
    """(folder, task, record) for every item of every ``samples_*.jsonl`` below the folders.

    lm-eval writes one line per item and filter pipeline, and a rerun into the same folder
    adds a newer file: each (task, solver, generator, item) is yielded once, newest first found.
    """
    latest: dict[tuple, tuple[Path, str, CGRRecord]] = {}
    for folder in map(Path, folders):
        files = sorted(folder.rglob("samples_*.jsonl")) if folder.is_dir() else []
        if not files:
            raise RunError(f"{folder}: no samples_*.jsonl files (run cgr-eval with "
                           "--output_path and --log_samples)")
        # names end in a sortable timestamp: a rerun into the same folder replaces older items
        for path in sorted(files, key=lambda p: p.name):
            match = _SAMPLES.match(path.name)
            task = match.group("task") if match else path.stem
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                sample = json.loads(line)
                try:
                    record = CGRRecord.from_json(sample["resps"][0][0])
                except (KeyError, IndexError, TypeError, ValueError) as err:
                    raise RunError(f"{path}: line {number} is not a cgr record ({err})") from None
                latest[(task, record.solver, record.generator, record.item_id)] = (
                    folder, task, record)
    yield from latest.values()


def load_runs(folders: list[str | Path]) -> list[ItemOutcome]:
    """One outcome per item of every run folder."""
    return [_outcome(str(folder), task, record)
            for folder, task, record in iter_records(folders)]
