"""The report's item explorer: one row per item and run, and what the page shows on a click.

Rows are small (letters, statuses, filters); details (the item, every channel's prompt and
raw output, the program, the solver-call trace, output, traceback, audits, provenance) are a
second JSON block that the page parses only when an item is first opened, so a run of 10,000
items loads fast (benchmarks/explorer_load.py measures it).

Everything here is untrusted text (programs, model output, dataset questions): it reaches the
page only inside ``<script type="application/json">`` with ``<``, ``>`` and ``&`` written as
``\\u003c``-style escapes (``embed_json``), so no string can close the script element, and the
page's code puts it on screen with ``textContent`` only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from markupsafe import Markup

from ..record import AUDIT_FLAGS, CGRRecord
from .runs import ItemOutcome, LoggedItem

__all__ = ["agreement", "embed_json", "explorer_data"]

CHANNEL_COLUMNS = ("direct", "assisted", "generator", "budget_matched")
_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026",
            0x2028: "\\u2028", 0x2029: "\\u2029"}
_SEARCH_CHARS = 300  # of the question, for the page's text filter


def embed_json(value: Any) -> Markup:
    """JSON that is safe between ``<script type="application/json">`` tags: no ``<``, ``>`` or
    ``&`` is left in it, so ``</script>`` or ``<!--`` inside a program cannot end the block."""
    return Markup(json.dumps(value, ensure_ascii=False, sort_keys=True).translate(_ESCAPES))


def agreement(outcome: ItemOutcome) -> str:
    """assisted against direct, as the summary counts it (stats.paired_difference over the
    items where the program channel ran): rescued = assisted right and direct wrong."""
    if outcome.assisted_status == "not_run":
        return "assisted_not_run"
    if outcome.assisted_ok != outcome.direct_ok:
        return "rescued" if outcome.assisted_ok else "harmed"
    return "both_right" if outcome.assisted_ok else "both_wrong"


def _provenance(record: CGRRecord) -> dict[str, Any] | None:
    """The assisted channel's provenance ({"class", "evidence"}), read defensively: older
    records have none, and anything that is not a mapping is shown as evidence only."""
    value = getattr(record.assisted, "provenance", None)
    if value is None:
        return None
    if not isinstance(value, dict):
        return {"class": "unknown", "evidence": value}
    return {"class": str(value.get("class") or "unknown"), "evidence": value.get("evidence")}


def _channels(record: CGRRecord) -> dict[str, Any]:
    names = [*CHANNEL_COLUMNS, *sorted(record.controls)]
    out = {}
    for name in names:
        result = record.channel(name)
        out[name] = {key: getattr(result, key) for key in (
            "status", "answer", "prompt", "raw", "error", "extraction_rule", "solver_calls",
            "tokens_in", "tokens_out", "seconds", "prompt_shortened")}
        if name != "assisted" and (result.program or result.trace):  # fixed:NAME programs
            out[name] |= {key: getattr(result, key) for key in (
                "program", "trace", "output", "traceback", "audits")}
    return out


def _row(index: int, outcome: ItemOutcome, record: CGRRecord) -> dict[str, Any]:
    provenance = _provenance(record)
    letters = {name: [record.channel(name).answer, record.channel(name).status]
               for name in (*CHANNEL_COLUMNS, *sorted(record.controls))}
    question = str(record.item.get("question", ""))
    return {"i": index, "run": outcome.run, "task": outcome.task, "solver": outcome.solver,
            "model": outcome.model, "item": outcome.item_id, "gold": outcome.gold,
            "letters": letters, "agreement": agreement(outcome),
            "status": outcome.assisted_status, "calls": outcome.assisted_calls,
            "flags": [flag for flag in AUDIT_FLAGS if outcome.audits.get(flag)],
            "shape": outcome.audits.get("program_shape"),
            "provenance": provenance and provenance["class"],
            "question": question[:_SEARCH_CHARS]}


def _detail(record: CGRRecord) -> dict[str, Any]:
    assisted = record.assisted
    return {"item": record.item, "solver": record.solver, "generator": record.generator,
            "generator_prompt": record.generator_prompt, "channels": _channels(record),
            "program": assisted.program, "trace": assisted.trace, "output": assisted.output,
            "traceback": assisted.traceback, "stderr": assisted.stderr,
            "audits": assisted.audits, "fallback": assisted.fallback,
            "sandbox": assisted.sandbox, "provenance": _provenance(record)}


def _pair(row: dict[str, Any], comparison: dict[str, Any]) -> None:
    """Beside a row of run A or B: the other run's letter on the compared channel, and B
    against A on that item (``unpaired`` when the item is not in both, or did not run)."""
    pair = comparison["items"].get((row["task"], row["item"]))
    side = "a" if row["run"] == comparison["a"] else "b"
    other = pair and pair["b" if side == "a" else "a"]
    row["other"] = None if other is None else (other[0] if other[0] is not None else other[1])
    row["versus"] = pair["versus"] if pair else "unpaired"
    row["side"] = side.upper()


def explorer_data(logged: Sequence[LoggedItem], outcomes: Sequence[ItemOutcome],
                  comparison: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the explorer template needs: the rows with their channel columns (the four
    channels, then every control any item ran) and the details, both as safe JSON. With a
    ``comparison`` (analysis/paired_runs.py) each row also shows the other run's letter."""
    if len(logged) != len(outcomes):
        raise ValueError("one outcome per logged item")
    order = sorted(range(len(outcomes)), key=lambda k: (
        outcomes[k].task, outcomes[k].solver, outcomes[k].model, outcomes[k].run,
        outcomes[k].item_id))
    rows = [_row(i, outcomes[k], logged[k].record) for i, k in enumerate(order)]
    for row in rows if comparison else ():
        _pair(row, comparison)
    details = [_detail(logged[k].record) for k in order]
    controls = sorted({name for item in logged for name in item.record.controls})
    compared = comparison and {"a": comparison["a"], "b": comparison["b"],
                               "channel": comparison["channel"]}
    return {"rows": embed_json({"columns": [*CHANNEL_COLUMNS, *controls], "rows": rows,
                                "compare": compared}),
            "details": embed_json(details), "count": len(rows)}
