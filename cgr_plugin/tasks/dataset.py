"""The ``custom_dataset`` function every CGR task YAML points at.

lm-eval calls it as ``fn(**metadata, **dataset_kwargs)``; ``metadata`` carries ``config_source``
(the task YAML's path), so data files resolve relative to the YAML, not to the current directory.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..data.items import MCQAItem
from ..data.loader import (
    DATASET_KWARGS,
    GoldEchoError,
    Problems,
    TaskConfigError,
    check_splits,
    dataset_spec,
    split_items,
)
from .task_file import read_task_file

__all__ = ["load_mcqa_dataset", "task_items"]

log = logging.getLogger(__name__)


def load_mcqa_dataset(**kwargs: Any) -> dict[str, Any]:
    """Load, normalize and validate one CGR task's items as ``{split: datasets.Dataset}``."""
    import datasets

    return {split: datasets.Dataset.from_list([item.to_doc() for item in items])
            for split, items in task_items(**kwargs).items()}


def task_items(**kwargs: Any) -> dict[str, list[MCQAItem]]:
    """One CGR task's items by split, loaded, normalized and validated as lm-eval will see them
    (``load_mcqa_dataset``'s arguments: ``config_source`` and the ``dataset_kwargs``)."""
    config_source = kwargs.get("config_source")
    problems = Problems()
    if config_source and config_source != "inline":
        task_file = read_task_file(Path(config_source), problems)
        problems.raise_first(config_source)
        assert task_file is not None
        where, options, task, line_of = (config_source, task_file.dataset_kwargs,
                                         task_file.config, task_file.line)
        base: Path | None = Path(config_source).parent
        preprocess = None
    else:
        where, base, line_of = config_source or "task config", None, (lambda *keys: None)
        options = {k: kwargs[k] for k in DATASET_KWARGS if k in kwargs}
        task = {k: kwargs[k] for k in ("dataset_path", "dataset_name") if k in kwargs}
        preprocess = kwargs.get("preprocess")
    spec = dataset_spec(options, task, where=where, base=base, problems=problems,
                        line_of=line_of, preprocess=preprocess)
    problems.raise_first(config_source)
    assert spec is not None
    splits = spec.split_names(problems)
    problems.raise_first(config_source)
    if spec.splits:  # an inline config (no YAML) names no splits to check
        check_splits(spec, splits, problems, line_of)
        problems.raise_first(config_source)

    subsets = _requested_subsets(kwargs, options, where)
    out = {}
    for split in splits:
        warned = len(problems.warnings)
        items = split_items(spec, split, problems, line_of)
        problems.raise_first(config_source)
        for warning in problems.warnings[warned:]:
            if isinstance(warning, GoldEchoError):  # `cgr validate-dataset` shows the others
                log.warning("cgr: %s", warning)
        if subsets is not None:
            items = _select(items, options["subset_field"], subsets, where)
        out[split] = items
    return out


def _requested_subsets(kwargs: Mapping[str, Any], options: Mapping[str, Any], where: str
                       ) -> list[str] | None:
    raw = kwargs.get("subsets")
    if raw is None:
        return None
    if "subset_field" not in options:
        raise TaskConfigError("--metadata subsets was given, but this task has no "
                              "dataset_kwargs.subset_field to select on; run it separately",
                              source=where)
    values = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise TaskConfigError("--metadata subsets must be a list or comma-separated string of "
                              f"names, got {raw!r}", source=where)
    return [v.strip() for v in values if v.strip()]


def _select(items: list[MCQAItem], key: str, wanted: list[str], where: str) -> list[MCQAItem]:
    available = sorted({str(it.metadata.get(key)) for it in items})
    missing = [w for w in wanted if w not in available]
    if missing:
        raise TaskConfigError(f"unknown {key} {missing[0]!r}; available: "
                              + ", ".join(available), source=where)
    return [it for it in items if str(it.metadata.get(key)) in wanted]

