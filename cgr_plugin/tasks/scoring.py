"""lm-eval filter and per-item scoring for the CGR channels.

One filter pipeline per channel reads that channel's outcome out of the JSON record as a small
JSON object (letter, status, solver calls, audit flags; JSON because lm-eval logs filtered
responses as text); ``process_results`` turns it into metrics:
accuracy, the share without a letter, solver calls, and for the assisted channel the rate of
every status and audit flag, the share of each provenance class and strategy tag, plus each
plugin scorer's value (see ``cgr_plugin.hookspecs``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from lm_eval.api.filter import Filter
from lm_eval.api.registry import AGGREGATION_REGISTRY, register_aggregation

from .. import plugins
from ..record import (
    ASSISTED_STATUSES,
    AUDIT_FLAGS,
    CHANNELS,
    PROGRAM_CONTROL,
    PROVENANCE_CLASSES,
    SCORED_CHANNELS,
    STRATEGY_TAGS,
    CGRRecord,
    control_problem,
)

__all__ = ["AUDIT_FLAGS", "ChannelFilter", "distinct_share", "filter_list", "metric_list",
           "process_results"]

DIVERSITY = "program_diversity"  # distinct program shapes / programs (programs/shapes.py)


def distinct_share(shapes: Sequence[str]) -> float:
    """lm-eval aggregation of ``program_diversity``: distinct values / values (1.0: every
    program has a shape of its own; 1/n: one program everywhere)."""
    return len(set(shapes)) / len(shapes) if shapes else float("nan")


if "distinct_share" not in AGGREGATION_REGISTRY:
    register_aggregation("distinct_share")(distinct_share)


class ChannelFilter(Filter):
    """``resps -> outcome`` of one channel of the cgr record.

    ``fallback=True`` takes the recorded fallback letter where the channel itself has none, for
    the separately reported ``assisted_fallback`` column.
    """

    def __init__(self, channel: str = "direct", fallback: bool = False, **kwargs: Any) -> None:
        if channel not in CHANNELS and control_problem(channel) is not None:
            raise ValueError(f"cgr channel filter: unknown channel {channel!r}; "
                             f"one of {', '.join(CHANNELS)}, cot or fixed:NAME")
        self.channel, self.fallback = channel, bool(fallback)

    def _outcome(self, response: Any) -> dict[str, Any]:
        try:
            record = CGRRecord.from_json(response)
            result = record.channel(self.channel)
        except (TypeError, ValueError, KeyError):
            return {"channel": self.channel, "letter": None, "status": "error",
                    "solver_calls": 0, "audits": {}}
        letter, used_fallback = result.answer, False
        if letter is None and self.fallback and result.fallback:
            letter, used_fallback = result.fallback["answer"], True
        view = f"{self.channel}_fallback" if self.fallback else self.channel
        scores = plugins.score(record, view) if result.status != "not_run" else {}
        return {"channel": view, "letter": letter, "status": result.status,
                "fallback_used": used_fallback, "solver_calls": result.solver_calls,
                "audits": result.audits, "scores": scores,
                "provenance": (result.provenance or {}).get("class")}

    def apply(self, resps: Iterable[list[Any]], docs: Iterable[dict]) -> list[list[str]]:
        return [[json.dumps(self._outcome(r)) for r in inst] for inst in resps]


def process_results(doc: dict[str, Any], results: list[Any]) -> dict[str, float]:
    """acc: the channel's letter is the gold; invalid: no letter at all; plus cost and audits."""
    try:
        outcome = json.loads(results[0])
    except (TypeError, ValueError):
        outcome = None
    if not isinstance(outcome, dict):  # a plain letter from a non-cgr filter pipeline
        outcome = {"letter": results[0], "status": "ok", "solver_calls": 0, "channel": ""}
    if outcome.get("status") == "not_run":
        return {}  # a channel this run did not compute gets no column, rather than zeros
    letter = outcome.get("letter")
    metrics = {"acc": float(letter == doc["answer"]),
               "invalid": float(letter not in doc["letters"])}
    channel = str(outcome.get("channel") or "")
    if channel in ("direct", "assisted", "budget_matched", "cot") or channel.startswith(
            PROGRAM_CONTROL):
        metrics["solver_calls"] = float(outcome.get("solver_calls") or 0)
    if channel.startswith(PROGRAM_CONTROL):
        metrics["status_ok"] = float(outcome.get("status") == "ok")
    if channel == "assisted":
        status = outcome.get("status")
        metrics |= {f"status_{s}": float(status == s) for s in ASSISTED_STATUSES
                    if s != "not_run"}
        audits = outcome.get("audits") or {}
        metrics |= {f"audit_{flag}": float(bool(audits.get(flag))) for flag in AUDIT_FLAGS
                    if audits.get(flag, False) is not None}  # None: not judged (a replay)
        if audits.get("program_shape"):
            metrics[DIVERSITY] = audits["program_shape"]  # aggregated by distinct_share
        found = outcome.get("provenance")
        if found in PROVENANCE_CLASSES:  # programs that ran ok and were re-run
            metrics |= {f"provenance_{c}": float(found == c) for c in PROVENANCE_CLASSES}
        tags = (audits.get("strategy") or {}).get("tags")
        if isinstance(tags, list):
            metrics |= {f"strategy_{tag}": float(tag in tags) for tag in STRATEGY_TAGS}
    if outcome.get("channel") == "assisted_fallback":
        metrics["fallback_used"] = float(bool(outcome.get("fallback_used")))
    scores = outcome.get("scores")
    if isinstance(scores, dict):
        metrics |= {name: float(value) for name, value in scores.items() if name not in metrics}
    return metrics


def filter_list(controls: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One filter pipeline per scored view (``record.SCORED_CHANNELS``), for every CGR task,
    and one per control of ``controls`` (model_arg ``controls=``, which lm-eval hands the task
    as metadata) other than budget_matched, which always has its own.

    ``assisted_fallback`` reads the assisted channel with the fallback letter where the program
    gave none; ``assisted`` itself never does.
    """
    pipelines = []
    views = [*SCORED_CHANNELS, *(name for name in dict.fromkeys(controls)
                                 if name not in SCORED_CHANNELS
                                 and control_problem(name) is None)]
    for view in views:
        channel = view.removesuffix("_fallback")
        step: dict[str, Any] = {"function": ChannelFilter, "channel": channel}
        if view != channel:
            step["fallback"] = True
        pipelines.append({"name": view, "filter": [step, {"function": "take_first"}]})
    return pipelines


def metric_list() -> list[dict[str, Any]]:
    """Every metric ``process_results`` can return, from the record's statuses and audit flags.

    Lower is better for everything but accuracy, the share of programs that ran ``ok``, the
    share classed ``solver_dependent`` (among the programs that ran ok), and
    ``program_diversity`` (distinct program shapes / programs, the assisted column only).
    Strategy tags (``strategy_TAG``, share of programs) are descriptions: neither is better.
    """
    names = ["acc", "invalid", "solver_calls", "fallback_used",
             *(f"status_{s}" for s in ASSISTED_STATUSES if s != "not_run"),
             *(f"audit_{flag}" for flag in AUDIT_FLAGS),
             *(f"provenance_{c}" for c in PROVENANCE_CLASSES),
             *(f"strategy_{tag}" for tag in STRATEGY_TAGS)]
    better = ("acc", "status_ok", "provenance_solver_dependent")
    return [{"metric": name, "aggregation": "mean",
             "higher_is_better": name in better} for name in names] + [
        {"metric": DIVERSITY, "aggregation": "distinct_share", "higher_is_better": True}]
