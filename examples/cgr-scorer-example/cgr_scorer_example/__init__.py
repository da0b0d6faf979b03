"""An example cgr plugin: one per-item scorer and one report partition."""

from __future__ import annotations

from cgr_plugin import hookimpl


def agrees_with_direct(record, channel):
    """1.0 when ``channel`` gave the direct channel's letter, 0.0 when another, None otherwise."""
    view = "assisted" if channel == "assisted_fallback" else channel
    result = record.channel(view)
    answer = result.answer
    if answer is None and channel == "assisted_fallback" and result.fallback:
        answer = result.fallback.get("answer")
    direct = record.direct.answer
    if answer is None or direct is None:
        return None
    return float(answer == direct)


@hookimpl
def register_scorers(register):
    register("agrees_with_direct", agrees_with_direct,
             channels=["assisted", "assisted_fallback", "generator", "budget_matched"],
             higher_is_better=False,
             description="share of items where the channel repeats the direct answer")


@hookimpl
def register_partitions(register):
    register("at_least_20_items", lambda group: group["n"] >= 20,
             description="datasets with at least 20 evaluated items")
