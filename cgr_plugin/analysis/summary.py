"""Every number of a cgr report, computed from item outcomes (the report only renders this).

Groups are (task, solver, generator with its prompt family). Aggregates are per (solver,
generator) over the groups of a partition: micro (items pooled) and macro (mean over tasks,
stratified bootstrap).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from statistics import mean
from typing import Any

import yaml

from .. import plugins
from ..plugins import Partition
from ..programs.packages import outputs_digest
from ..record import ASSISTED_STATUSES, HARD_CODED, PROVENANCE_CLASSES, STRATEGY_TAGS
from .runs import ItemOutcome
from .stats import DEFAULT_RESAMPLES, DEFAULT_SEED, accuracy, macro_difference, paired_difference

__all__ = ["Partition", "build_summary", "load_partitions"]

CHANNELS = {"direct": "direct_ok", "assisted": "assisted_ok",
            "assisted_fallback": "fallback_ok", "generator": "generator_ok"}
EXECUTION_FAILURES = ("runtime_error", "timeout", "memory_limit", "budget_exceeded", "crashed",
                      "protocol_error", "invalid_answer", "entry_mismatch")
EXTRACTION_FAILURES = ("generator_error", "no_code", "syntax_error", "missing_entry")


def builtin_partitions(gate: float) -> list[Partition]:
    return [
        Partition("all", "every dataset x solver pair", lambda g: True),
        Partition("non_zero_baseline", "pairs with at least one correct direct answer",
                  lambda g: g["accuracy"]["direct"]["correct"] > 0),
        Partition("direct_gate", f"pairs whose direct accuracy is above {gate:.0%}",
                  lambda g: (g["accuracy"]["direct"]["value"] or 0) > gate),
    ]


def load_partitions(path: str | Path) -> list[Partition]:
    """User partitions: ``{name: {tasks, solvers, generators, min_direct_accuracy,
    max_direct_accuracy, description}}`` (every key optional; lists select, bounds filter)."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    data = data.get("partitions", data)
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a mapping of partition name to rules")
    allowed = {"tasks", "solvers", "generators", "min_direct_accuracy", "max_direct_accuracy",
               "description"}
    partitions = []
    for name, rules in data.items():
        rules = dict(rules or {})
        for key in ("tasks", "solvers", "generators"):
            if key in rules and not isinstance(rules[key], list):
                raise ValueError(f"{path}: partition {name!r}: {key} must be a list")
        unknown = set(rules) - allowed
        if unknown:
            raise ValueError(f"{path}: partition {name!r}: unknown key {sorted(unknown)[0]!r} "
                             f"(allowed: {', '.join(sorted(allowed))})")

        def keep(group: dict[str, Any], rules: dict[str, Any] = rules) -> bool:
            value = group["accuracy"]["direct"]["value"] or 0.0
            return ((not rules.get("tasks") or group["task"] in rules["tasks"])
                    and (not rules.get("solvers") or group["solver"] in rules["solvers"])
                    and (not rules.get("generators") or group["generator"] in rules["generators"])
                    and value >= rules.get("min_direct_accuracy", 0.0)
                    and value <= rules.get("max_direct_accuracy", 1.0))

        partitions.append(Partition(str(name), str(rules.get("description", "user-defined")),
                                    keep))
    return partitions


def _group_key(o: ItemOutcome) -> tuple[str, str, str]:
    return (o.task, o.solver, o.model)


def _controls(items: Sequence[ItemOutcome], resamples: int, seed: int
              ) -> dict[str, dict[str, Any]]:
    """Each control (cot, fixed:NAME) beside assisted: its accuracy, and assisted - control on
    the items where both ran (paired bootstrap, exact McNemar, rescued/harmed)."""
    out = {}
    for name in sorted({name for o in items for name in o.controls}):
        ran = [o for o in items if name in o.controls and o.controls[name][1] != "not_run"]
        both = [o for o in ran if o.assisted_status != "not_run"]
        correct = [o.controls[name][0] == o.gold for o in ran]
        out[name] = {
            "n": len(ran), "accuracy": accuracy(correct).to_dict(),
            "solver_calls_mean": mean(o.controls[name][2] for o in ran) if ran else None,
            "status_ok": sum(o.controls[name][1] == "ok" for o in ran) / max(len(ran), 1),
            "assisted_minus_control": paired_difference(
                [o.assisted_ok for o in both], [o.controls[name][0] == o.gold for o in both],
                resamples=resamples, seed=seed).to_dict() if both else None}
    return out


def _programs(ran: Sequence[ItemOutcome]) -> dict[str, Any]:
    """How item-specific the programs are: the share with the shape of a program their prompt
    shows, and distinct shapes / programs (programs/shapes.py)."""
    shapes = [o.audits.get("program_shape") for o in ran if o.audits.get("program_shape")]
    judged = [o for o in ran if o.audits.get("copies_prompt") is not None
              and o.audits.get("program_shape")]
    top = Counter(shapes).most_common(1)
    return {"programs": len(shapes),
            "copies_prompt": (sum(bool(o.audits["copies_prompt"]) for o in judged) / len(judged)
                              if judged else None),
            "diversity": len(set(shapes)) / len(shapes) if shapes else None,
            "largest_shape_share": top[0][1] / len(shapes) if top else None}


def _strategies(ran: Sequence[ItemOutcome]) -> list[dict[str, Any]]:
    """Each provenance class and strategy tag: how many programs have it, their share (of the
    programs with a class, or with tags), and the assisted accuracy on them."""
    classed = [o for o in ran if o.provenance]
    tagged = [o for o in ran if isinstance((o.audits.get("strategy") or {}).get("tags"), list)]
    rows = []
    for kind, names, pool, has in (
            ("provenance", PROVENANCE_CLASSES, classed, lambda o, n: o.provenance == n),
            ("tag", STRATEGY_TAGS, tagged, lambda o, n: n in o.audits["strategy"]["tags"])):
        for name in names:
            hits = [o for o in pool if has(o, name)]
            if hits:
                rows.append({"kind": kind, "name": name, "n": len(hits),
                             "share": len(hits) / len(pool),
                             "accuracy": accuracy([o.assisted_ok for o in hits]).to_dict()})
    return rows


def _shapes(ran: Sequence[ItemOutcome], top: int = 5) -> list[dict[str, Any]]:
    """The most common program shapes: count, share, assisted accuracy, their usual class."""
    by_shape: dict[str, list[ItemOutcome]] = defaultdict(list)
    for o in ran:
        if o.audits.get("program_shape"):
            by_shape[o.audits["program_shape"]].append(o)
    total = sum(len(v) for v in by_shape.values())
    ranked = sorted(by_shape.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:top]
    return [{"shape": shape, "n": len(members), "share": len(members) / total,
             "accuracy": accuracy([o.assisted_ok for o in members]).to_dict(),
             "provenance": Counter(o.provenance or "-" for o in members).most_common(1)[0][0]}
            for shape, members in ranked]


def _attribution(ran: Sequence[ItemOutcome], resamples: int, seed: int) -> dict[str, Any]:
    """How much of assisted - direct the generator's own knowledge could explain: rescued and
    harmed items split by whether the assisted answer is the generator's own, assisted - direct
    where the generator's own letter is not the gold (wrong or missing), and the share of
    programs whose solver prompts lead to the generator's answer (audit leading_prompt)."""
    rescued = [o for o in ran if o.assisted_ok and not o.direct_ok]
    harmed = [o for o in ran if o.direct_ok and not o.assisted_ok]
    own_wrong = [o for o in ran if not o.generator_ok]
    judged = [o for o in ran if o.audits.get("leading_prompt") is not None]
    return {
        "rescued_as_generator": sum(o.assisted == o.generator_letter for o in rescued),
        "rescued_otherwise": sum(o.assisted != o.generator_letter for o in rescued),
        "harmed_as_generator": sum(o.assisted == o.generator_letter for o in harmed),
        "harmed_otherwise": sum(o.assisted != o.generator_letter for o in harmed),
        "generator_wrong_n": len(own_wrong),
        "difference_where_generator_wrong": paired_difference(
            [o.assisted_ok for o in own_wrong], [o.direct_ok for o in own_wrong],
            resamples=resamples, seed=seed).to_dict() if own_wrong else None,
        "leading_prompt": (sum(bool(o.audits["leading_prompt"]) for o in judged) / len(judged)
                           if judged else None)}


def _group(items: Sequence[ItemOutcome], resamples: int, seed: int) -> dict[str, Any]:
    first = items[0]
    statuses = Counter(o.assisted_status for o in items)
    ran = [o for o in items if o.assisted_status != "not_run"]
    n = len(items)
    out: dict[str, Any] = {"task": first.task, "solver": first.solver,
                           "generator": first.model, "family": first.family, "n": n}
    # Channels beside direct count only the items where the program channel ran: a
    # direct-only run must not read as "assisted 0%".
    out["accuracy"] = {"direct": accuracy([o.direct_ok for o in items]).to_dict()}
    out["accuracy"] |= {channel: accuracy([getattr(o, attribute) for o in ran]).to_dict()
                        for channel, attribute in CHANNELS.items() if channel != "direct"}
    out["difference"] = paired_difference([o.assisted_ok for o in ran],
                                          [o.direct_ok for o in ran],
                                          resamples=resamples, seed=seed).to_dict()
    controlled = [o for o in items if o.control_status != "not_run"]
    if controlled:
        out["accuracy"]["budget_matched"] = accuracy([o.control_ok for o in controlled]).to_dict()
        out["difference_vs_budget_matched"] = paired_difference(
            [o.assisted_ok for o in controlled], [o.control_ok for o in controlled],
            resamples=resamples, seed=seed).to_dict()
    out["controls"] = _controls(items, resamples, seed)
    out["programs"] = _programs(ran)
    out["strategies"] = _strategies(ran)
    out["shapes"] = _shapes(ran)
    out["attribution"] = _attribution(ran, resamples, seed)
    out["assisted_ran"] = len(ran)
    out["statuses"] = {s: statuses.get(s, 0) for s in ASSISTED_STATUSES}
    out["solver_calls"] = {
        "direct_mean": mean(o.direct_calls for o in items),
        "assisted_mean": mean(o.assisted_calls for o in items),
        "assisted_histogram": dict(sorted(Counter(o.assisted_calls for o in items).items()))}
    out["audits"] = {
        HARD_CODED: sum(o.flagged for o in ran) / max(len(ran), 1),
        "altered_item": sum(bool(o.audits.get("altered_item")) for o in ran) / max(len(ran), 1),
        "leading_prompt": sum(bool(o.audits.get("leading_prompt")) for o in ran)
        / max(len(ran), 1),
        "extraction_failure": sum(o.assisted_status in EXTRACTION_FAILURES for o in ran)
        / max(len(ran), 1),
        "execution_failure": sum(o.assisted_status in EXECUTION_FAILURES for o in ran)
        / max(len(ran), 1),
        "timeout": sum(o.assisted_status == "timeout" for o in ran) / max(len(ran), 1),
        "direct_unreadable": sum(o.direct_status == "invalid" for o in items) / n}
    out["scores"] = _scores(items)
    return out


def _scores(items: Sequence[ItemOutcome]) -> dict[str, dict[str, dict[str, float]]]:
    """Plugin scorers: ``{scorer: {channel: {"mean", "n"}}}`` over the items that have a value."""
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for o in items:
        for channel, scores in o.scores.items():
            for name, value in scores.items():
                values[name][channel].append(value)
    return {name: {channel: {"mean": mean(v), "n": len(v)} for channel, v in by_channel.items()}
            for name, by_channel in sorted(values.items())}


def _aggregate(groups: Sequence[dict[str, Any]], items: Mapping[tuple, Sequence[ItemOutcome]],
               resamples: int, seed: int) -> dict[str, Any]:
    """Micro and macro numbers for one (solver, generator) over the given groups."""
    pooled = [o for g in groups for o in items[(g["task"], g["solver"], g["generator"])]]
    ran = [o for o in pooled if o.assisted_status != "not_run"]
    micro = {"direct": accuracy([o.direct_ok for o in pooled]).to_dict()}
    micro |= {ch: accuracy([getattr(o, a) for o in ran]).to_dict() for ch, a in
              CHANNELS.items() if ch != "direct"}
    micro["difference"] = paired_difference([o.assisted_ok for o in ran],
                                            [o.direct_ok for o in ran],
                                            resamples=resamples, seed=seed).to_dict()
    strata = {}
    for g in groups:
        group_ran = [o for o in items[(g["task"], g["solver"], g["generator"])]
                     if o.assisted_status != "not_run"]
        strata[g["task"]] = ([o.assisted_ok for o in group_ran],
                             [o.direct_ok for o in group_ran])
    macro = macro_difference(strata, resamples=resamples, seed=seed)
    generator_values = [g["accuracy"]["generator"]["value"] for g in groups
                        if g["accuracy"]["generator"]["value"] is not None]
    macro["generator_channel"] = mean(generator_values) if generator_values else None
    return {"tasks": [g["task"] for g in groups], "items": len(pooled), "micro": micro,
            "macro": macro}


def _key(group: dict[str, Any]) -> tuple[str, str, str]:
    return (group["task"], group["solver"], group["generator"])


def _headline(outcomes: Sequence[ItemOutcome], partitions: Sequence[Partition],
              resamples: int, seed: int, members: Mapping[str, set] | None = None
              ) -> tuple[list[dict], dict[str, Any]]:
    """Groups and aggregates; ``members`` fixes each partition's groups (sensitivity reuses
    the full data's membership so only the removed items differ)."""
    items: dict[tuple, list[ItemOutcome]] = defaultdict(list)
    for o in outcomes:
        items[_group_key(o)].append(o)
    groups = [_group(v, resamples, seed) for _, v in sorted(items.items())]
    pairs = sorted({(g["solver"], g["generator"]) for g in groups})
    aggregates: dict[str, Any] = {}
    for partition in partitions:
        kept = [g for g in groups if (_key(g) in members[partition.name] if members
                                      else partition.keep(g))]
        aggregates[partition.name] = {
            "description": partition.description,
            "excluded": [f"{g['task']} / {g['solver']}" for g in groups if g not in kept],
            "by_model": {f"{s} + {gen}": _aggregate(
                [g for g in kept if (g["solver"], g["generator"]) == (s, gen)], items,
                resamples, seed) for s, gen in pairs}}
    return groups, aggregates


def _program_sets(outcomes: Sequence[ItemOutcome]) -> list[dict[str, Any]]:
    """Each run's generated programs: how many, and the digest a program package's manifest
    gives as ``generator_outputs_sha256`` (the same for the run that wrote a package, its
    export and every run that replayed it)."""
    sets: dict[tuple[str, str], list[ItemOutcome]] = defaultdict(list)
    for o in outcomes:
        if o.output_sha256 is not None:
            sets[(o.run, o.model)].append(o)
    return [{"run": run, "generator": model, "programs": len(items),
             "generator_outputs_sha256": outputs_digest(
                 (o.task, o.item_id, o.output_sha256) for o in items)}
            for (run, model), items in sorted(sets.items())]


def build_summary(outcomes: Sequence[ItemOutcome], *, runs: Sequence[str],
                  partitions: Sequence[Partition] = (), gate: float = 0.30,
                  resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> dict[str, Any]:
    if not outcomes:
        raise ValueError("no items to report on")
    every = [*builtin_partitions(gate), *plugins.registry().entries["partitions"].values(),
             *partitions]
    groups, aggregates = _headline(outcomes, every, resamples, seed)
    members = {p.name: {_key(g) for g in groups if p.keep(g)} for p in every}
    clean = [o for o in outcomes if not o.flagged]
    _, sensitivity = _headline(clean, every, resamples, seed, members) if clean else ([], {})
    for group in groups:
        group["zero_baseline"] = group["accuracy"]["direct"]["correct"] == 0
    return {
        "schema": "cgr.summary/1",
        "settings": {"runs": list(runs), "bootstrap_resamples": resamples, "seed": seed,
                     "confidence": 0.95, "direct_gate": gate,
                     "partitions": {p.name: p.description for p in every}},
        "groups": groups,
        "aggregates": aggregates,
        "sensitivity": {"excluded_items": len(outcomes) - len(clean),
                        "rule": f"programs flagged {HARD_CODED} removed (classed constant by the "
                                "provenance re-runs; without a class, flagged by the static "
                                "audits); each partition keeps the datasets it has on the full "
                                "data", "aggregates": sensitivity},
        "diagnostics": {"zero_baseline": [f"{g['task']} / {g['solver']}" for g in groups
                                          if g["accuracy"]["direct"]["correct"] == 0]},
        "program_sets": _program_sets(outcomes),
    }
