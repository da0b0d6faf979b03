"""What a study will cost before it runs: model calls per cell and, from measured speeds, time.

Calls are counted per item and summed over a cell's items:

- generator: one program per item (write cells);
- solver, direct: one per item; a later cell of the same solver on the same items answers it
  from the study's shared response cache, so it is counted once per solver;
- solver, programs: per program, by family, capped at the budget: ``per_option`` judges each
  option (the item's option count); ``cgr`` 0.5, ``pot`` 0.6 (the means measured in
  docs/findings.md); ``decompose`` 3 (assumed: a few sub-questions); any other family half
  the budget;
- budget_matched: as many sampled direct answers as the program's calls;
- cot: one; ``fixed:judge_each_option``: one judge per option; ``fixed:eliminate``: one choice
  per dropped option (at most 6) and a last one; ``fixed:evidence_then_judge``: one question
  and a judge per option; any other fixed program the whole budget.

Time per call is prefill of its prompt (the item's real direct or generator prompt, characters
/ 4 tokens) plus typical decoded lengths (:data:`DECODED`), at the model's measured speed, plus
each cell's model loads. It is an estimate: replies vary in length, programs in calls, and
llama.cpp reuses a shared prompt prefix, which this ignores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ...data.items import MCQAItem
from ...models.registry import DirectSettings, ModelSpec
from ...prompts import generator_template, render_prompt
from ..direct import direct_prompt, direct_settings
from ..item_view import item_for_prompt
from ..settings import RunSettings
from .cells import Cell
from .speeds import Speed

__all__ = ["DECODED", "CellCost", "estimate_cells", "program_calls"]

# typical decoded tokens per call, capped by each call's own limit
DECODED = {"letter": 4, "reasoning": 150, "program": 350, "judge": 1, "ask": 60}
FAMILY_CALLS: dict[str, Callable[[int], float]] = {
    "per_option": lambda options: options, "cgr": lambda options: 0.5,
    "pot": lambda options: 0.6, "decompose": lambda options: 3}
FIXED_CALLS: dict[str, Callable[[int], tuple[float, str]]] = {
    "judge_each_option": lambda n: (n, "judge"),
    "eliminate": lambda n: (min(max(n - 2, 0), 6) + 1, "choose"),
    "evidence_then_judge": lambda n: (n + 1, "judge")}


def program_calls(family: str, options: int, budget: int) -> float:
    """Expected solver calls of one generated program of ``family`` (see the module doc)."""
    per_item = FAMILY_CALLS.get(family, lambda _: budget / 2)(options)
    return min(per_item, budget)


@dataclass
class CellCost:
    """One cell's calls and estimated seconds (None: a model without a measured speed)."""

    generator_calls: int = 0
    solver_calls: dict[str, float] = field(default_factory=dict)  # by channel
    seconds: float | None = 0.0
    missing: list[str] = field(default_factory=list)  # models without a speed
    cached_direct: int = 0  # direct answers an earlier cell of the same solver leaves cached

    @property
    def total_solver_calls(self) -> float:
        return sum(self.solver_calls.values())


def _tokens(text: str) -> float:
    return len(text) / 4


class _Pricer:
    """Seconds per call for one model, or None without a speed (then the cell has none)."""

    def __init__(self, cost: CellCost, label: str, speed: Speed | None) -> None:
        self.cost, self.label, self.speed = cost, label, speed

    def _spend(self, seconds: float) -> None:
        if self.speed is None:
            if self.label not in self.cost.missing:
                self.cost.missing.append(self.label)
            self.cost.seconds = None
        elif self.cost.seconds is not None:
            self.cost.seconds += seconds

    def add(self, prompt_tokens: float, decoded: float, calls: float = 1) -> None:
        if self.speed is None:
            self._spend(0)
        else:
            self._spend(calls * self.speed.seconds(prompt_tokens, decoded))

    def load(self) -> None:
        self._spend(self.speed.load_seconds if self.speed else 0)


def estimate_cells(cells: Sequence[Cell], items: Sequence[MCQAItem], *,
                   settings: RunSettings, specs: Mapping[str, ModelSpec | None],
                   speeds: Mapping[str, Speed | None]) -> dict[str, CellCost]:
    """Each cell's cost over ``items``; ``specs`` and ``speeds`` by model label."""
    answered: set[str] = set()  # solvers whose direct prompts the shared cache already holds
    prompt_tokens: dict[DirectSettings, list[float]] = {}  # by direct style, rendered once
    out = {}
    for cell in cells:
        label = cell.solver.label
        style = direct_settings(specs.get(label), style=settings.direct_style,
                                max_tokens=settings.direct_max_tokens)
        cost = CellCost()
        solver = _Pricer(cost, label, speeds.get(label))
        solver.load()
        prompts = prompt_tokens.setdefault(style, [
            _tokens(direct_prompt(item, style, settings_dirs(settings))) for item in items])
        if label not in answered:
            _direct(solver, cost, prompts, style)
            answered.add(label)
        else:
            cost.cached_direct = len(prompts)
        if cell.kind in ("write", "replay"):
            _programs(cell, cost, solver, items, prompts, settings, style, speeds, specs)
        _free_controls(cell, cost, solver, items, prompts, settings)
        out[cell.name] = cost
    return out


def settings_dirs(settings: RunSettings) -> list[str]:
    return [settings.template_dir] if settings.template_dir else []


def _decoded(style: DirectSettings) -> float:
    return min(DECODED[style.style], style.max_tokens)


def _direct(solver: _Pricer, cost: CellCost, prompts: Sequence[float],
            style: DirectSettings) -> None:
    cost.solver_calls["direct"] = len(prompts)
    for tokens in prompts:
        solver.add(tokens, _decoded(style))


def _programs(cell: Cell, cost: CellCost, solver: _Pricer, items: Sequence[MCQAItem],
              prompts: Sequence[float], settings: RunSettings, style: DirectSettings,
              speeds: Mapping[str, Speed | None], specs: Mapping[str, ModelSpec | None]
              ) -> None:
    """Program writing (write cells), the programs' solver calls and budget_matched."""
    assert cell.family is not None and cell.generator is not None
    if cell.kind == "write":
        writer = cell.generator.label
        pricer = _Pricer(cost, writer, speeds.get(writer))
        if writer != cell.solver.label or cell.generator.args:
            pricer.load()
        cost.generator_calls = len(items)
        for item in items:
            prompt = render_prompt(generator_template(cell.family), settings_dirs(settings),
                                   item=item_for_prompt(item), budget=settings.budget).text
            pricer.add(_tokens(prompt), min(DECODED["program"], settings.generator_max_tokens))
    calls = [program_calls(cell.family, len(item.choices), settings.budget) for item in items]
    kind = "judge" if cell.family == "per_option" else "letter"
    cost.solver_calls["programs"] = sum(calls)
    for n, tokens in zip(calls, prompts, strict=True):
        solver.add(tokens, DECODED["judge"] if kind == "judge" else _decoded(style), n)
    if "budget_matched" in cell.controls:
        cost.solver_calls["budget_matched"] = sum(calls)
        for n, tokens in zip(calls, prompts, strict=True):
            solver.add(tokens, _decoded(style), n)


def _free_controls(cell: Cell, cost: CellCost, solver: _Pricer, items: Sequence[MCQAItem],
                   prompts: Sequence[float], settings: RunSettings) -> None:
    for control in cell.controls:
        if control == "budget_matched":
            continue
        if control == "cot":
            cost.solver_calls["cot"] = len(items)
            for tokens in prompts:
                solver.add(tokens, DECODED["reasoning"])
            continue
        name = control.removeprefix("fixed:")
        total = 0.0
        for item, tokens in zip(items, prompts, strict=True):
            calls, kind = FIXED_CALLS.get(name, lambda _: (settings.budget, "ask"))(
                len(item.choices))
            calls = min(calls, settings.budget)
            total += calls
            solver.add(tokens, DECODED["judge"] if kind == "judge" else DECODED["ask"]
                       if kind == "ask" else DECODED["letter"], calls)
        cost.solver_calls[control] = total
