"""Which items of each task a study runs, as lm-eval will number them.

lm-eval takes either ``--limit N`` (the first N documents of every task) or ``--samples``
(document indices per task). Explicit item ids become indices here, by loading each task's
items the way its ``custom_dataset`` does, so an id that is not in the task's split is an error
before anything runs, and the plan can count options and prompt lengths of the very items.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from ...data.items import MCQAItem
from ...errors import CGRError
from ...tasks.dataset import task_items
from .spec import StudyError, StudySpec

__all__ = ["TaskSelection", "eval_item_args", "select_items"]


@dataclass(frozen=True)
class TaskSelection:
    """One task's items in the study: their document indices and the items themselves."""

    task: str
    split: str
    total: int  # items in the split
    indices: tuple[int, ...]
    items: tuple[MCQAItem, ...]


def select_items(spec: StudySpec) -> dict[str, TaskSelection]:
    """Every task's selected items: ``items`` ids where given, else the first ``limit``."""
    out = {}
    for task, (yaml_path, split) in spec.task_files.items():
        try:
            items = task_items(**spec.metadata, config_source=str(yaml_path)).get(split)
        except CGRError as err:
            raise StudyError(f"{spec.source}: task {task}: its items do not load: {err}"
                             ) from None
        if items is None:
            raise StudyError(f"{spec.source}: task {task}: no {split!r} split in {yaml_path}")
        if task in spec.items:
            position = {item.id: i for i, item in enumerate(items)}
            missing = [i for i in spec.items[task] if i not in position]
            if missing:
                raise StudyError(f"{spec.source}: items.{task}: no item {missing[0]!r} in the "
                                 f"{split} split of {task} ({len(items)} items; ids as the "
                                 "records show them, e.g. "
                                 f"{', '.join(repr(it.id) for it in items[:3])})")
            indices = tuple(position[i] for i in spec.items[task])
        else:
            indices = tuple(range(min(spec.limit or len(items), len(items))))
        out[task] = TaskSelection(task, split, len(items), indices,
                                  tuple(items[i] for i in indices))
    return out


def eval_item_args(spec: StudySpec, selection: Mapping[str, TaskSelection]) -> list[str]:
    """cgr-eval's item flags: ``--samples`` where ids were named, else ``--limit`` (or none),
    and ``--metadata``."""
    metadata = (["--metadata", json.dumps(dict(spec.metadata), separators=(",", ":"))]
                if spec.metadata else [])
    if spec.items:
        return ["--samples", json.dumps({task: list(chosen.indices)
                                         for task, chosen in selection.items()},
                                        separators=(",", ":")), *metadata]
    return (["--limit", str(spec.limit)] if spec.limit else []) + metadata
