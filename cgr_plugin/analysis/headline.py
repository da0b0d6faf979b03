"""The report's headline: the main paired differences as sentences a reader can quote.

Each sentence carries its own interval, test and counts, so it stays true when lifted out of
the report alone. Numbers come from the summary (analysis/summary.py); nothing is recomputed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["headline"]

MAX_GROUP_SENTENCES = 12  # beyond this, the per-dataset table says it better


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def _difference(d: dict[str, Any]) -> str:
    """'+10.0 points (95% paired bootstrap interval -20.0 to +40.0; ...)'."""
    text = (f"{_points(d['difference'])} points (95% paired bootstrap interval "
            f"{_points(d['low'])} to {_points(d['high'])}")
    if "mcnemar_p" in d:
        text += (f"; exact McNemar p = {d['mcnemar_p']:.3g}; {d['rescued']} rescued, "
                 f"{d['harmed']} harmed")
    return text + ")"


def _group_sentence(g: dict[str, Any]) -> str:
    who = f"{g['task']} ({g['solver']} solving, {g['generator']} writing programs)"
    d = g["difference"]
    if d["difference"] is None:
        return f"{who}: the program channel did not run on any of its {g['n']} items."
    direct, assisted = g["accuracy"]["direct"], g["accuracy"]["assisted"]
    return (f"{who}: assisted {100 * assisted['value']:.1f}% against direct "
            f"{100 * direct['value']:.1f}% on {d['n']} items, a difference of "
            f"{_difference(d)}.")


def _aggregate_sentences(summary: dict[str, Any]) -> list[str]:
    block = summary["aggregates"].get("all", {}).get("by_model", {})
    sentences = []
    for model, agg in block.items():
        macro, micro = agg["macro"], agg["micro"]["difference"]
        if len(agg["tasks"]) < 2 or macro["difference"] is None:
            continue
        sentences.append(
            f"Over {len(agg['tasks'])} datasets ({agg['items']} items), {model}: assisted "
            f"minus direct is {_difference(macro)} averaged over datasets, and "
            f"{_difference(micro)} over items pooled.")
    return sentences


def headline(summary: dict[str, Any]) -> list[str]:
    """Sentences for the top of the report: pooled results first, then each dataset."""
    groups = summary["groups"]
    sentences = _aggregate_sentences(summary)
    sentences += [_group_sentence(g) for g in groups[:MAX_GROUP_SENTENCES]]
    if len(groups) > MAX_GROUP_SENTENCES:
        sentences.append(f"{len(groups) - MAX_GROUP_SENTENCES} more datasets x models: see the "
                         "per-dataset table.")
    return sentences
