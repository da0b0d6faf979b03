"""The provenance audit's re-runs: a program that ran ``ok`` runs again, in the same sandbox
backend and without any model, under canned solvers, with its options permuted and with its
real replies replayed; ``programs/provenance.py`` classes the answers.

Each re-run costs what a warm sandbox start costs (a few ms) plus the program's own time, which
is capped near the real run's. A failure here never costs the item: it is recorded as class
``unknown`` with the reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from .. import plugins
from ..data.items import MCQAItem
from ..programs.canned import CannedSolver, permute_options
from ..programs.provenance import UNTRUSTED, Rerun, classify
from ..sandbox.interface import HandleCall, SandboxError, SandboxLimits, as_sandbox
from .item_view import item_for_program, program_seed

__all__ = ["ReplayedSolver", "provenance_of"]

log = logging.getLogger(__name__)


class ReplayedSolver:
    """Answers a program's calls with the replies its real run got, in order (from the trace)."""

    def __init__(self, trace: Sequence[Mapping[str, Any]]) -> None:
        self.trace, self.position = list(trace), 0

    def __call__(self, message: Mapping[str, Any]) -> dict[str, Any]:
        if self.position >= len(self.trace):
            return {"error": "replay: more calls than the real run made"}
        entry = self.trace[self.position]
        self.position += 1
        kind = message.get("kind")
        if entry.get("kind") != kind:
            return {"error": f"replay: a {kind} call where the real run made a "
                             f"{entry.get('kind')} call"}
        if "error" in entry:
            return {"error": entry["error"]}
        field = {"ask": "response", "choose": "letter", "judge": "p_yes"}.get(str(kind))
        return {"value": entry.get(field)} if field else {"error": f"unknown call {kind!r:.80}"}


def _replayable(trace: Sequence[Mapping[str, Any]], trace_chars: int) -> bool:
    """Whether the trace holds every reply whole (a reply cut to ``trace_chars`` is not)."""
    return all(entry.get("kind") in ("ask", "choose", "judge")
               and len(str(entry.get("response") or "")) < trace_chars for entry in trace)


def _rerun(code: str, data: dict[str, Any], kind: str, seed: int | None, order: str | None,
           handle_call: HandleCall, *, sandbox: str, limits: SandboxLimits,
           pick_seed: int) -> Rerun:
    letters = list(data["letters"])
    try:
        result = as_sandbox(plugins.sandbox(sandbox), sandbox).run(
            code, data, handle_call=handle_call, limits=limits, seed=pick_seed)
    except SandboxError as err:
        return Rerun(kind, seed, "sandbox_error", order=order, error=f"{type(err).__name__}: "
                                                                      f"{err}"[:300])
    status, letter, text = result.status, None, None
    if status == "ok":
        answer = result.answer
        if isinstance(answer, str) and answer.strip().upper() in letters:
            letter = answer.strip().upper()
            text = str(data["choices"][letters.index(letter)])
        else:
            status = "uninformative" if answer is None else "invalid_answer"
    return Rerun(kind, seed, status, letter, text, order)


def _reruns(code: str, item: MCQAItem, trace: Sequence[Mapping[str, Any]], *, seeds: int,
            budget: int, sandbox: str, limits: SandboxLimits, seed: int,
            trace_chars: int) -> list[Rerun]:
    """The replay, the solver re-runs, then the item re-runs; they stop at the first that is no
    evidence (``UNTRUSTED``: the rest would cost as much and tell nothing)."""
    data, base = item_for_program(item), program_seed(seed, item)
    # solver.pick keeps the real run's tie-break seed: a guess by tie-break is no solver reply
    run = {"sandbox": sandbox, "limits": limits, "pick_seed": base}
    plan: list[tuple[str, int | None, dict[str, Any], str | None, HandleCall]] = []
    if _replayable(trace, trace_chars):
        plan.append(("replay", None, data, None, ReplayedSolver(trace)))
    for i in range(1, seeds + 1):
        plan.append(("solver", i, data, None, CannedSolver(
            f"{base}/solver/{i}", data["letters"], data["choices"], budget)))
    for i in range(1, seeds + 1 if len(data["choices"]) > 1 else 1):
        moved, order = permute_options(data, f"{base}/{i}")
        plan.append(("item", i, moved, "".join(item.letters[old] for old in order),
                     CannedSolver(f"{base}/item/{i}", moved["letters"], moved["choices"],
                                  budget)))
    reruns: list[Rerun] = []
    for kind, number, view, order_text, handle_call in plan:
        reruns.append(_rerun(code, view, kind, number, order_text, handle_call, **run))
        if reruns[-1].status in UNTRUSTED:
            break
    return reruns


def provenance_of(code: str, item: MCQAItem, answer: str, trace: Sequence[Mapping[str, Any]],
                  *, seeds: int, budget: int, sandbox: str, limits: SandboxLimits, seed: int,
                  program_seconds: float, trace_chars: int) -> dict[str, Any]:
    """The provenance of a program whose real run returned ``answer``: ``{"class", "reason",
    "evidence"}``, evidence holding every re-run's answer and the seconds they took. Never
    raises: a failure is class ``unknown`` naming it."""
    started = time.perf_counter()
    # a re-run gets a few times the real run's program time, never more than its limit
    wall = min(limits.wall_seconds, max(2.0, 5 * program_seconds + 1))
    capped = replace(limits, wall_seconds=wall,
                     cpu_seconds=max(1, min(limits.cpu_seconds, int(wall) + 1)))
    try:
        reruns = _reruns(code, item, trace, seeds=seeds, budget=budget, sandbox=sandbox,
                         limits=capped, seed=seed, trace_chars=trace_chars)
        found = classify(answer, item.choices[item.letters.index(answer)], reruns)
    except Exception as err:  # the audit's failure is recorded, the item goes on
        log.exception("item %s: the provenance re-runs failed", item.id)
        found = {"class": "unknown", "reason": f"the re-runs failed: {type(err).__name__}: "
                                               f"{err}"[:500], "evidence": {"answer": answer}}
    found["evidence"]["seeds"] = seeds
    found["evidence"]["seconds"] = round(time.perf_counter() - started, 4)
    return found
