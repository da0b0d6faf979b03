"""lm-eval filter and per-item scoring for the CGR channels.

One filter pipeline per channel reads that channel's outcome out of the JSON record as a small
JSON object (letter, status, solver calls, audit flags; JSON because lm-eval logs filtered
responses as text); ``process_results`` turns it into metrics:
accuracy, the share without a letter, solver calls, and for the assisted channel the rate of
every status and audit flag, plus each plugin scorer's value (see ``cgr_plugin.hookspecs``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from lm_eval.api.filter import Filter

from .. import plugins
from ..record import ASSISTED_STATUSES, AUDIT_FLAGS, CHANNELS, SCORED_CHANNELS, CGRRecord

__all__ = ["AUDIT_FLAGS", "ChannelFilter", "filter_list", "metric_list", "process_results"]


class ChannelFilter(Filter):
    """``resps -> outcome`` of one channel of the cgr record.

    ``fallback=True`` takes the recorded fallback letter where the channel itself has none, for
    the separately reported ``assisted_fallback`` column.
    """

    def __init__(self, channel: str = "direct", fallback: bool = False, **kwargs: Any) -> None:
        if channel not in CHANNELS:
            raise ValueError(f"cgr channel filter: unknown channel {channel!r}; "
                             f"one of {', '.join(CHANNELS)}")
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
                "audits": result.audits, "scores": scores}

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
    if outcome.get("channel") in ("direct", "assisted", "budget_matched"):
        metrics["solver_calls"] = float(outcome.get("solver_calls") or 0)
    if outcome.get("channel") == "assisted":
        status = outcome.get("status")
        metrics |= {f"status_{s}": float(status == s) for s in ASSISTED_STATUSES
                    if s != "not_run"}
        audits = outcome.get("audits") or {}
        metrics |= {f"audit_{flag}": float(bool(audits.get(flag))) for flag in AUDIT_FLAGS}
    if outcome.get("channel") == "assisted_fallback":
        metrics["fallback_used"] = float(bool(outcome.get("fallback_used")))
    scores = outcome.get("scores")
    if isinstance(scores, dict):
        metrics |= {name: float(value) for name, value in scores.items() if name not in metrics}
    return metrics


def filter_list() -> list[dict[str, Any]]:
    """One filter pipeline per scored view (``record.SCORED_CHANNELS``), for every CGR task.

    ``assisted_fallback`` reads the assisted channel with the fallback letter where the program
    gave none; ``assisted`` itself never does.
    """
    pipelines = []
    for view in SCORED_CHANNELS:
        channel = view.removesuffix("_fallback")
        step: dict[str, Any] = {"function": ChannelFilter, "channel": channel}
        if view != channel:
            step["fallback"] = True
        pipelines.append({"name": view, "filter": [step, {"function": "take_first"}]})
    return pipelines


def metric_list() -> list[dict[str, Any]]:
    """Every metric ``process_results`` can return, from the record's statuses and audit flags.

    Lower is better for everything but accuracy and the share of programs that ran ``ok``.
    """
    names = ["acc", "invalid", "solver_calls", "fallback_used",
             *(f"status_{s}" for s in ASSISTED_STATUSES if s != "not_run"),
             *(f"audit_{flag}" for flag in AUDIT_FLAGS)]
    return [{"metric": name, "aggregation": "mean",
             "higher_is_better": name in ("acc", "status_ok")} for name in names]
