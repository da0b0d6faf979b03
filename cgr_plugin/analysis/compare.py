"""Paired comparison of two lm-eval runs from their ``samples_*.jsonl`` (``cgr compare``).

Any task and any model: a line of a samples file (lm-eval 0.4.13, ``--log_samples``) has
``doc_id``, ``doc_hash``, ``filter``, ``metrics`` (the names it scored) and each metric's
value. Lines pair by (filter, doc_id); when both lines carry ``doc_hash`` and the hashes differ,
the two runs saw different documents under one id (another dataset revision, another
``--limit`` order, another task) and the comparison stops with an error that names them,
unless ``allow_hash_mismatch``. Documents in only one run are counted, never silently paired.

The statistics are analysis/stats.py's ``paired_difference`` with B as the treated run:
B - A accuracy, a paired percentile bootstrap over documents (seeded), an exact McNemar test
(two-sided binomial on the discordant pairs); rescued = B right where A was wrong.

Names follow lm-eval's proposed ``compare_paired()`` (PR #3835, lm_eval/api/significance.py)
where they fit; docs/statistics.md, "Comparing two lm-eval runs", says where this differs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import CGRError
from .stats import DEFAULT_RESAMPLES, DEFAULT_SEED, accuracy, paired_difference

__all__ = ["DEFAULT_METRICS", "CompareError", "choose_metric", "compare_paired", "compare_samples",
           "describe", "read_samples"]

SCHEMA = "cgr.compare/1"
# the first of these that both files score is the default metric
DEFAULT_METRICS = ("acc", "exact_match", "acc_norm", "pass@1", "pass_at_1", "em")


class CompareError(CGRError):
    """Two samples files that cannot be paired, or a metric that is not right/wrong."""


def read_samples(path: str | Path) -> dict[tuple[str, int], dict[str, Any]]:
    """The lines of one samples file keyed (filter, doc_id); a line that is not an lm-eval
    sample, or a (filter, doc_id) seen twice, is an error naming the file and line."""
    lines: dict[tuple[str, int], dict[str, Any]] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CompareError(f"cannot read {path}: {err}") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            sample = json.loads(line)
            key = (str(sample.get("filter", "none")), int(sample["doc_id"]))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise CompareError(f"{path}: line {number} is not an lm-eval sample with a doc_id "
                               f"({type(err).__name__}: {err})") from None
        if key in lines:
            raise CompareError(f"{path}: line {number} repeats doc_id {key[1]} of filter "
                               f"{key[0]!r} (one run per file: is this a concatenation?)")
        lines[key] = sample
    if not lines:
        raise CompareError(f"{path}: no samples")
    return lines


def _metric_names(lines: Mapping[tuple[str, int], dict[str, Any]]) -> set[str]:
    names: set[str] = set()
    for sample in lines.values():
        names.update(sample.get("metrics") or [k for k in sample if k in DEFAULT_METRICS])
    return names


def choose_metric(a: Mapping, b: Mapping, metric: str | None) -> str:
    """``metric`` if both files score it, else the first of DEFAULT_METRICS that both do."""
    both = _metric_names(a) & _metric_names(b)
    if metric is not None:
        if metric not in both:
            raise CompareError(f"metric {metric!r} is not in both files (both score: "
                               f"{', '.join(sorted(both)) or 'nothing in common'})")
        return metric
    for name in DEFAULT_METRICS:
        if name in both:
            return name
    raise CompareError("no accuracy-like metric in both files (both score: "
                       f"{', '.join(sorted(both)) or 'nothing in common'}); choose one with "
                       "--metric")


def _correct(sample: dict[str, Any], metric: str, where: str) -> bool:
    value = sample.get(metric)
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise CompareError(f"{where}: {metric} = {value!r} is not 0 or 1; a paired McNemar test "
                       "needs a right/wrong metric per document (choose one with --metric)")


def compare_paired(scores_a: Sequence[bool], scores_b: Sequence[bool], *,
                   resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                   confidence: float = 0.95) -> dict[str, Any]:
    """B - A on the same documents: both accuracies, the difference with its paired
    bootstrap interval, the exact McNemar p, and the discordant counts both ways."""
    d = paired_difference(scores_b, scores_a, resamples=resamples, seed=seed,
                          confidence=confidence)
    acc_a, acc_b = accuracy(scores_a, confidence), accuracy(scores_b, confidence)
    return {"n": d.n, "acc_a": acc_a.value, "acc_b": acc_b.value,
            "difference": d.difference, "ci_low": d.low, "ci_high": d.high,
            "confidence": confidence, "mcnemar_p": d.mcnemar_p, "rescued": d.rescued,
            "harmed": d.harmed, "discordant": d.rescued + d.harmed,
            "both_right": sum(a and b for a, b in zip(scores_a, scores_b, strict=True)),
            "both_wrong": sum(not a and not b for a, b in zip(scores_a, scores_b, strict=True)),
            "resamples": resamples, "seed": seed, "test": "exact McNemar (two-sided binomial)",
            "interval": "paired percentile bootstrap"}


def _pairs(a: Mapping, b: Mapping, name: str, allow_hash_mismatch: bool
           ) -> tuple[list[int], dict[str, Any]]:
    ids_a = {doc for f, doc in a if f == name}
    ids_b = {doc for f, doc in b if f == name}
    shared = sorted(ids_a & ids_b)
    mismatched = [doc for doc in shared
                  if a[(name, doc)].get("doc_hash") and b[(name, doc)].get("doc_hash")
                  and a[(name, doc)]["doc_hash"] != b[(name, doc)]["doc_hash"]]
    if mismatched and not allow_hash_mismatch:
        raise CompareError(
            f"filter {name!r}: {len(mismatched)} of {len(shared)} shared doc_ids have different "
            f"doc_hash in the two files (first: doc_id {mismatched[0]}): the runs saw different "
            "documents under one id; compare runs of the same task and data, or pass "
            "--allow-hash-mismatch to pair by doc_id anyway")
    hashed = sum(bool(a[(name, d)].get("doc_hash") and b[(name, d)].get("doc_hash"))
                 for d in shared)
    return shared, {"only_a": len(ids_a - ids_b), "only_b": len(ids_b - ids_a),
                    "doc_hash_checked": hashed, "doc_hash_mismatched": len(mismatched)}


def compare_samples(path_a: str | Path, path_b: str | Path, *, metric: str | None = None,
                    filter_name: str | None = None, allow_hash_mismatch: bool = False,
                    resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
                    ) -> dict[str, Any]:
    """Every filter both files have (or just ``filter_name``), compared B - A on ``metric``."""
    a, b = read_samples(path_a), read_samples(path_b)
    chosen = choose_metric(a, b, metric)
    filters = sorted({f for f, _ in a} & {f for f, _ in b})
    if filter_name is not None:
        if filter_name not in filters:
            raise CompareError(f"filter {filter_name!r} is not in both files (both have: "
                               f"{', '.join(filters) or 'none in common'})")
        filters = [filter_name]
    if not filters:
        raise CompareError(f"no filter in common: A has {sorted({f for f, _ in a})}, "
                           f"B has {sorted({f for f, _ in b})}")
    comparisons = {}
    for name in filters:
        shared, pairing = _pairs(a, b, name, allow_hash_mismatch)
        scored = [doc for doc in shared if chosen in a[(name, doc)] and chosen in b[(name, doc)]]
        pairing["unscored"] = len(shared) - len(scored)
        scores_a = [_correct(a[(name, d)], chosen, f"{path_a} doc_id {d}") for d in scored]
        scores_b = [_correct(b[(name, d)], chosen, f"{path_b} doc_id {d}") for d in scored]
        comparisons[name] = {**compare_paired(scores_a, scores_b, resamples=resamples,
                                              seed=seed), "pairing": pairing}
    return {"schema": SCHEMA, "a": str(path_a), "b": str(path_b), "metric": chosen,
            "paired_by": "filter, doc_id (doc_hash checked where both have it)",
            "comparisons": comparisons}


def describe(result: dict[str, Any]) -> list[str]:
    """One paragraph per filter, in words a reader can quote."""
    lines = [f"A = {result['a']}", f"B = {result['b']}", f"metric: {result['metric']}"]
    for name, c in result["comparisons"].items():
        p = c["pairing"]
        lines.append("")
        lines.append(f"filter {name}: {c['n']} documents paired"
                     + (f" ({p['only_a']} only in A, {p['only_b']} only in B, not compared)"
                        if p["only_a"] or p["only_b"] else "")
                     + (f"; {p['unscored']} without {result['metric']} left out"
                        if p["unscored"] else ""))
        if not c["n"]:
            continue
        lines.append(f"  A {100 * c['acc_a']:.1f}%  B {100 * c['acc_b']:.1f}%  B - A "
                     f"{100 * c['difference']:+.1f} points, 95% paired bootstrap interval "
                     f"[{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}]")
        lines.append(f"  exact McNemar p = {c['mcnemar_p']:.3g}; B right where A wrong "
                     f"(rescued) {c['rescued']}, A right where B wrong (harmed) {c['harmed']}; "
                     f"both right {c['both_right']}, both wrong {c['both_wrong']}")
    return lines
