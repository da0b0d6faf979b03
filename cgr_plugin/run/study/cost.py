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
each cell's model loads. A llama.cpp model keeps the KV state of the prompt before: a batch's
prompts (in text order, as it answers them) prefill only what they do not share with the one
before, and a program's calls after its first only :data:`REUSED_TOKENS` each. It is an
estimate: replies vary in length and programs in calls.
"""

from __future__ import annotations

import os
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
REUSED_TOKENS = 30  # what a program's later call on llama.cpp prefills: its own words
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


def _new_tokens(texts: Sequence[str]) -> list[float]:
    """Tokens each prompt of a batch has to prefill on llama.cpp, which answers a batch in
    text order and keeps the KV state of the prompt before: all but the shared prefix."""
    ordered = sorted(texts)
    fresh = {}
    for before, text in zip(["", *ordered], ordered, strict=False):
        shared = len(os.path.commonprefix([before, text]))
        fresh.setdefault(text, _tokens(text[shared:]))
    return [fresh[text] for text in texts]


class _Pricer:
    """Seconds per call for one model, or None without a speed (then the cell has none).

    ``reuses_prefix`` (llama.cpp): a batch's prompts prefill only what they do not share with
    the prompt before, and the calls of one program after its first only their own
    :data:`REUSED_TOKENS` (they repeat the item's text)."""

    def __init__(self, cost: CellCost, label: str, speed: Speed | None,
                 reuses_prefix: bool) -> None:
        self.cost, self.label, self.speed, self.reuses = cost, label, speed, reuses_prefix

    def _spend(self, seconds: float) -> None:
        if self.speed is None:
            if self.label not in self.cost.missing:
                self.cost.missing.append(self.label)
            self.cost.seconds = None
        elif self.cost.seconds is not None:
            self.cost.seconds += seconds

    def calls(self, prompt_tokens: float, decoded: float, calls: float = 1) -> None:
        """``calls`` calls about one item, each reading about ``prompt_tokens``."""
        if self.speed is None or calls <= 0:
            self._spend(0)
            return
        later = min(REUSED_TOKENS, prompt_tokens) if self.reuses else prompt_tokens
        first = min(calls, 1)
        self._spend(first * self.speed.seconds(prompt_tokens, decoded)
                    + (calls - first) * self.speed.seconds(later, decoded))

    def batch(self, texts: Sequence[str], decoded: float) -> None:
        """One call per prompt, sent as one batch."""
        for tokens in (_new_tokens(texts) if self.reuses else map(_tokens, texts)):
            self.calls(tokens, decoded)

    def load(self) -> None:
        self._spend(self.speed.load_seconds if self.speed else 0)


def estimate_cells(cells: Sequence[Cell], items: Sequence[MCQAItem], *,
                   settings: RunSettings, specs: Mapping[str, ModelSpec | None],
                   speeds: Mapping[str, Speed | None]) -> dict[str, CellCost]:
    """Each cell's cost over ``items``; ``specs`` and ``speeds`` by model label."""
    answered: set[str] = set()  # solvers whose direct prompts the shared cache already holds
    rendered: dict[DirectSettings, list[str]] = {}  # direct prompts by style, rendered once
    out = {}
    for cell in cells:
        label = cell.solver.label
        spec = specs.get(label)
        style = direct_settings(spec, style=settings.direct_style,
                                max_tokens=settings.direct_max_tokens)
        cost = CellCost()
        solver = _Pricer(cost, label, speeds.get(label), _reuses(spec))
        solver.load()
        texts = rendered.setdefault(style, [direct_prompt(item, style, settings_dirs(settings))
                                            for item in items])
        if label not in answered:
            cost.solver_calls["direct"] = len(texts)
            solver.batch(texts, _decoded(style))
            answered.add(label)
        else:
            cost.cached_direct = len(texts)
        prompts = [_tokens(text) for text in texts]
        if cell.kind in ("write", "replay"):
            _programs(cell, cost, solver, items, prompts, settings, style, speeds, specs)
        _free_controls(cell, cost, solver, items, texts, settings)
        out[cell.name] = cost
    return out


def _reuses(spec: ModelSpec | None) -> bool:
    return spec is not None and spec.format == "gguf"


def settings_dirs(settings: RunSettings) -> list[str]:
    return [settings.template_dir] if settings.template_dir else []


def _decoded(style: DirectSettings) -> float:
    return min(DECODED[style.style], style.max_tokens)


def _programs(cell: Cell, cost: CellCost, solver: _Pricer, items: Sequence[MCQAItem],
              prompts: Sequence[float], settings: RunSettings, style: DirectSettings,
              speeds: Mapping[str, Speed | None], specs: Mapping[str, ModelSpec | None]
              ) -> None:
    """Program writing (write cells), the programs' solver calls and budget_matched."""
    assert cell.family is not None and cell.generator is not None
    if cell.kind == "write":
        writer = cell.generator.label
        pricer = _Pricer(cost, writer, speeds.get(writer), _reuses(specs.get(writer)))
        if writer != cell.solver.label or cell.generator.args:
            pricer.load()
        cost.generator_calls = len(items)
        pricer.batch([render_prompt(generator_template(cell.family), settings_dirs(settings),
                                    item=item_for_prompt(item), budget=settings.budget).text
                      for item in items],
                     min(DECODED["program"], settings.generator_max_tokens))
    calls = [program_calls(cell.family, len(item.choices), settings.budget) for item in items]
    decoded = DECODED["judge"] if cell.family == "per_option" else _decoded(style)
    cost.solver_calls["programs"] = sum(calls)
    for n, tokens in zip(calls, prompts, strict=True):
        solver.calls(tokens, decoded, n)
    if "budget_matched" in cell.controls:
        cost.solver_calls["budget_matched"] = sum(calls)
        for n, tokens in zip(calls, prompts, strict=True):
            solver.calls(tokens, _decoded(style), n)


def _free_controls(cell: Cell, cost: CellCost, solver: _Pricer, items: Sequence[MCQAItem],
                   texts: Sequence[str], settings: RunSettings) -> None:
    """cot (one reasoning call per item) and the fixed programs' calls."""
    for control in cell.controls:
        if control == "budget_matched":
            continue
        if control == "cot":
            cost.solver_calls["cot"] = len(items)
            solver.batch(texts, DECODED["reasoning"])
            continue
        name = control.removeprefix("fixed:")
        total = 0.0
        for item, text in zip(items, texts, strict=True):
            calls, kind = FIXED_CALLS.get(name, lambda _: (settings.budget, "ask"))(
                len(item.choices))
            calls = min(calls, settings.budget)
            total += calls
            solver.calls(_tokens(text), DECODED["judge" if kind == "judge" else
                                                "ask" if kind == "ask" else "letter"], calls)
        cost.solver_calls[control] = total
