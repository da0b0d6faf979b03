"""Two cgr runs side by side (``cgr report A B --compare``): items paired by (task, item id).

Each run folder must hold one configuration per item (one solver, generator and prompt
family): two records of one item in one run would make the pairing a guess, so that is an
error naming the task and the configurations. One channel is compared (``assisted`` unless
told otherwise); an item is paired when both runs have it and the channel ran in both; the
others are counted per dataset (only in A, only in B, not run). The statistics are
analysis/stats.py's: B - A with a paired bootstrap interval and an exact McNemar test;
rescued = B right where A was wrong.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ..errors import CGRError
from ..record import CGRRecord, control_problem
from .runs import ItemOutcome, LoggedItem
from .stats import DEFAULT_RESAMPLES, DEFAULT_SEED, accuracy, paired_difference

__all__ = ["compare_runs", "comparison_table", "name_runs", "versus"]

SCHEMA = "cgr.run_comparison/1"
CHANNELS = ("direct", "assisted", "generator", "budget_matched")


def _by_item(logged: Sequence[LoggedItem], label: str) -> dict[tuple[str, str], CGRRecord]:
    items: dict[tuple[str, str], CGRRecord] = {}
    configurations: dict[str, set[str]] = defaultdict(set)
    for entry in logged:
        record = entry.record
        family = (record.generator_prompt or {}).get("name")
        configurations[entry.task].add(f"{record.solver} + {record.generator}"
                                       + (f" [{family}]" if family else ""))
        items[(entry.task, record.item_id)] = record
    for task, names in configurations.items():
        if len(names) > 1:
            raise CGRError(f"run {label} has task {task} under {len(names)} configurations "
                           f"({', '.join(sorted(names))}); --compare pairs one configuration "
                           "per run: give folders that hold one each")
    return items


def name_runs(a: Sequence[ItemOutcome], b: Sequence[ItemOutcome]) -> list[ItemOutcome]:
    """Both runs' outcomes for one summary. Where A and B share a (task, solver, generator)
    (a before/after comparison), the report's groups would pool the two runs' items, so the
    generator is named with its run there: ``gen (run A)``, ``gen (run B)``."""
    shared = {(o.task, o.solver, o.model) for o in a} & {(o.task, o.solver, o.model) for o in b}
    if not shared:
        return [*a, *b]
    return [dataclasses.replace(o, generator=f"{o.generator} (run {label})")
            if (o.task, o.solver, o.model) in shared else o
            for label, outcomes in (("A", a), ("B", b)) for o in outcomes]


def versus(a_ok: bool, b_ok: bool) -> str:
    """B against A on one item, named as the summary names assisted against direct."""
    if a_ok != b_ok:
        return "rescued" if b_ok else "harmed"
    return "both_right" if a_ok else "both_wrong"


def _check_channel(channel: str) -> None:
    if channel not in CHANNELS and control_problem(channel) is not None:
        raise CGRError(f"--channel {channel!r}: not a channel ({', '.join(CHANNELS)}) nor a "
                       f"control: {control_problem(channel)}")


def compare_runs(logged_a: Sequence[LoggedItem], logged_b: Sequence[LoggedItem], *,
                 labels: tuple[str, str], channel: str = "assisted",
                 resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
                 ) -> dict[str, Any]:
    """Per dataset, B - A on ``channel``, and per paired item both runs' letters."""
    _check_channel(channel)
    a, b = _by_item(logged_a, labels[0]), _by_item(logged_b, labels[1])
    datasets, items = [], {}
    for task in sorted({t for t, _ in a} | {t for t, _ in b}):
        ids_a = {i for t, i in a if t == task}
        ids_b = {i for t, i in b if t == task}
        pairs, not_run = [], 0
        for item_id in sorted(ids_a & ids_b):
            left, right = a[(task, item_id)].channel(channel), b[(task, item_id)].channel(channel)
            if "not_run" in (left.status, right.status):
                not_run += 1
                continue
            gold = a[(task, item_id)].gold
            pairs.append((left.answer == gold, right.answer == gold))
            items[(task, item_id)] = {
                "a": [left.answer, left.status], "b": [right.answer, right.status],
                "versus": versus(*pairs[-1])}
        difference = paired_difference([p[1] for p in pairs], [p[0] for p in pairs],
                                       resamples=resamples, seed=seed)
        datasets.append({
            "task": task, "n": len(pairs), "only_a": len(ids_a - ids_b),
            "only_b": len(ids_b - ids_a), "not_run": not_run,
            "accuracy_a": accuracy([p[0] for p in pairs]).to_dict(),
            "accuracy_b": accuracy([p[1] for p in pairs]).to_dict(),
            "b_minus_a": difference.to_dict()})
    return {"schema": SCHEMA, "a": labels[0], "b": labels[1], "channel": channel,
            "datasets": datasets, "items": items}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def comparison_table(comparison: dict[str, Any]) -> tuple[str, list[str], list[list[str]]]:
    """The report's table of B - A per dataset (title, header, rows)."""
    rows = []
    for d in comparison["datasets"]:
        diff = d["b_minus_a"]
        rows.append([d["task"], str(d["n"]), _pct(d["accuracy_a"]["value"]),
                     _pct(d["accuracy_b"]["value"]),
                     "-" if diff["difference"] is None else
                     f"{100 * diff['difference']:+.1f} [{100 * diff['low']:+.1f}, "
                     f"{100 * diff['high']:+.1f}]",
                     str(diff["rescued"]), str(diff["harmed"]),
                     "-" if diff["mcnemar_p"] is None else f"{diff['mcnemar_p']:.3g}",
                     f"{d['only_a']} / {d['only_b']} / {d['not_run']}"])
    title = (f"Run B minus run A, {comparison['channel']} channel (A = {comparison['a']}, "
             f"B = {comparison['b']}; items paired by task and item id; accuracy %, "
             "difference in points with paired bootstrap 95%; rescued = B right where A wrong)")
    return title, ["task", "paired items", "A", "B", "B - A", "rescued", "harmed",
                   "McNemar p", "only A / only B / not run"], rows
