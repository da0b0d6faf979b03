"""``cgr validate-dataset``: check task YAMLs and every row of their data; report every problem.

It runs the loader's own checks (:mod:`cgr_plugin.task_file`, :func:`dataset_spec`,
:func:`split_items`), collecting instead of stopping, plus checks only a whole dataset allows:
split and few-shot settings, columns no row has. Each problem is one line,
``FILE:line N: item ID: field 'X': message``, then a summary per YAML.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.items import ItemError, MCQAItem
from ..data.loader import (
    SPLIT_KEYS,
    DatasetSpec,
    Problems,
    TaskConfigError,
    check_splits,
    dataset_spec,
    split_items,
)

__all__ = ["Report", "SplitReport", "format_report", "validate_task_yaml", "validate_main"]


@dataclass
class SplitReport:
    name: str
    roles: list[str]
    items: int
    letters: str
    choices: str


@dataclass
class Report:
    path: Path
    task: str | None = None
    splits: list[SplitReport] = field(default_factory=list)
    problems: Problems = field(default_factory=Problems)
    notes: list[str] = field(default_factory=list)


def validate_task_yaml(path: Path) -> Report:
    """Every problem of one task YAML and all of its data."""
    from .task_file import read_task_file

    report = Report(path=path)
    problems = report.problems
    task_file = read_task_file(path, problems)
    if task_file is None:
        return report
    task = task_file.config.get("task")
    report.task = task if isinstance(task, str) else None
    if not task_file.uses_cgr:
        if any(err.field == "class" for err in problems.errors):
            return report  # the class could not be imported: that is the problem
        problems.add(TaskConfigError(
            "this task does not load its data with cgr-plugin; add "
            "'class: !function cgr_plugin.tasks.CGRTask' (see docs/datasets.md)",
            source=str(path), line=task_file.line("class") or task_file.line("custom_dataset")))
        return report
    spec = dataset_spec(task_file.dataset_kwargs, task_file.config, where=str(path),
                        base=path.parent, problems=problems, line_of=task_file.line)
    if spec is None:
        return report
    splits = spec.split_names(problems)
    check_splits(spec, splits, problems, task_file.line)
    roles = {split: [k for k in SPLIT_KEYS if spec.splits.get(k) == split] for split in splits}
    sizes: dict[str, int] = {}
    for split in splits:
        if not spec.readable or (spec.kind != "hub" and split not in spec.files):
            report.notes.append(f"split {split}: rows not read; fix the problems above first")
            continue
        items = split_items(spec, split, problems, task_file.line)
        sizes[split] = len(items)
        if spec.subset_field and spec.kind == "bundle":
            _subset_values(items, spec, problems)
        report.splits.append(SplitReport(name=split, roles=roles[split], items=len(items),
                                         letters=_letters(items), choices=_choices(items)))
    _fewshot(task_file.config, spec, sizes, task_file.line, problems)
    return report


def _subset_values(items: list[MCQAItem], spec: DatasetSpec, problems: Problems) -> None:
    lacking = [it.id for it in items if spec.subset_field not in it.metadata]
    if lacking:
        problems.add(TaskConfigError(
            f"{len(lacking)} items have no metadata {spec.subset_field!r} to select subsets on "
            f"(first: {lacking[0]})", source=spec.where, field="dataset_kwargs.subset_field"))


def _fewshot(config: dict[str, Any], spec: DatasetSpec, sizes: dict[str, int], line_of: Any,
             problems: Problems) -> None:
    shots = config.get("num_fewshot")
    if not isinstance(shots, int) or isinstance(shots, bool) or shots <= 0:
        return
    split = next((spec.splits[k] for k in ("fewshot_split", "training_split", "validation_split")
                  if k in spec.splits), None)
    if split is None:
        problems.add(TaskConfigError(
            f"num_fewshot {shots} needs fewshot_split: the split whose solved items are shown "
            "before each question, e.g. data_files: {test: q.jsonl, train: shots.jsonl} and "
            "fewshot_split: train", source=spec.where, field="num_fewshot",
            line=line_of("num_fewshot")))
        return
    available = sizes.get(split, 0) - (1 if split == spec.splits.get("test_split") else 0)
    if split in sizes and available < shots:
        problems.add(TaskConfigError(
            f"num_fewshot {shots} but split {split!r} has only {max(available, 0)} "
            f"example{'s' if available != 1 else ''} to show", source=spec.where,
            field="num_fewshot", line=line_of("num_fewshot")))


def _letters(items: Sequence[MCQAItem]) -> str:
    if not items:
        return "-"
    longest = max(items, key=lambda it: len(it.letters)).letters
    if len(longest) >= 2 and all(len(x) == 1 for x in longest) and (
            "".join(longest) in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" or "".join(longest) in "123456789"):
        return f"{longest[0]}-{longest[-1]}"
    return ", ".join(longest)


def _choices(items: Sequence[MCQAItem]) -> str:
    if not items:
        return "-"
    counts = sorted({len(it.choices) for it in items})
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


# -- output ------------------------------------------------------------------------------------
def _group_key(err: ItemError) -> tuple[Any, ...]:
    return (err.source, err.field, err.kind or err.reason)


def format_report(report: Report, max_repeats: int = 5) -> list[str]:
    """The report's lines: problems (each repeated message at most ``max_repeats`` times, then
    one line with the count), warnings, then the summary. ``max_repeats`` 0 prints all."""
    lines: list[str] = []
    for kind, found in (("", report.problems.errors), ("warning: ", report.problems.warnings)):
        seen: Counter[tuple[Any, ...]] = Counter()
        extra: dict[tuple[Any, ...], list[ItemError]] = {}
        for err in found:
            key = _group_key(err)
            seen[key] += 1
            if max_repeats and seen[key] > max_repeats:
                extra.setdefault(key, []).append(err)
                continue
            lines.append(f"{kind}{err}")
        for (source, fld, reason), rest in extra.items():
            places = ", ".join(e.line or f"item {e.item}" for e in rest[:10])
            more = f", ... ({len(rest) - 10} more)" if len(rest) > 10 else ""
            where = f"{source}: field {fld!r}" if fld else str(source)
            lines.append(f"{kind}{where}: {reason} -- {len(rest)} more like this at {places}"
                         f"{more} (--all lists each)")
    lines += [f"{report.path}: {note}" for note in report.notes]
    name = f"task {report.task}" if report.task else "no task"
    if report.splits:
        parts = []
        for s in report.splits:
            roles = f" ({', '.join(s.roles)})" if s.roles else " (unused)"
            parts.append(f"{s.name}{roles}: {s.items} item{'s' if s.items != 1 else ''}, "
                         f"letters {s.letters}, {s.choices} choices")
        lines.append(f"{report.path}: {name}: " + "; ".join(parts))
    errors, warnings = len(report.problems.errors), len(report.problems.warnings)
    verdict = "ok" if not errors else f"{errors} problem{'s' if errors != 1 else ''}"
    if warnings:
        verdict += f", {warnings} warning{'s' if warnings != 1 else ''}"
    lines.append(f"{report.path}: {verdict}")
    return lines


def validate_main(paths: Iterable[str], *, show_all: bool = False) -> int:
    """Validate each YAML, print the reports; 1 when any has a problem, else 0."""
    failed = 0
    for name in paths:
        path = Path(name)
        try:
            report = validate_task_yaml(path)
        except Exception as err:  # never a traceback: a bug here must still name the file
            report = Report(path=path)
            report.problems.add(ItemError(f"validation stopped: {type(err).__name__}: {err}",
                                          source=str(path)))
        for line in format_report(report, max_repeats=0 if show_all else 5):
            print(line)
        failed += bool(report.problems.errors)
    return 1 if failed else 0
