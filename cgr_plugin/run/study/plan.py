"""A study's plan: its items, its cells and their cost, and the text ``--dry-run`` prints."""

from __future__ import annotations

import gc
import logging
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ... import plugins
from ...models.factory import make_backend
from ...models.registry import ModelSpec, load_registry
from ..settings import RunSettings
from .cells import Cell, plan_cells
from .cost import CellCost, estimate_cells
from .selection import TaskSelection, eval_item_args, select_items
from .spec import ModelEntry, StudySpec
from .speeds import Speed, SpeedCache, machine_key, measurable, measure_speed, model_key
from .state import cell_finished, journal_records, read_runs

__all__ = ["Plan", "duration", "format_plan", "make_plan", "progress"]

log = logging.getLogger(__name__)


@dataclass
class Plan:
    spec: StudySpec
    selection: dict[str, TaskSelection]
    cells: list[Cell]
    costs: dict[str, CellCost] = field(default_factory=dict)
    speeds: dict[str, tuple[Speed | None, str]] = field(default_factory=dict)  # by label

    @property
    def items(self) -> int:
        return sum(len(chosen.items) for chosen in self.selection.values())

    def estimated_seconds(self, cells: list[Cell] | None = None) -> float | None:
        """The estimate for ``cells`` (default: all), None where a model has no speed."""
        costs = [self.costs.get(cell.name) for cell in (cells or self.cells)]
        if not costs or any(c is None or c.seconds is None for c in costs):
            return None
        return sum(c.seconds for c in costs if c is not None and c.seconds is not None)


def make_plan(spec: StudySpec, *, measure: bool = False, speeds: SpeedCache | None = None,
              say: Callable[[str], None] = print) -> Plan:
    """The study's items, cells and costs; ``measure`` times offline models without a cached
    speed (loading each once), else only cached speeds are used."""
    selection = select_items(spec)
    plan = Plan(spec, selection, plan_cells(spec, eval_item_args(spec, selection)))
    settings = RunSettings.from_model_args(dict(spec.model_args))
    registry = load_registry([settings.registry] if settings.registry else [])
    specs = {entry.label: registry.get(entry.model) for entry in _models(spec)}
    plan.speeds = {entry.label: _speed(entry, specs[entry.label], settings, registry, measure,
                                       speeds or SpeedCache(), say) for entry in _models(spec)}
    items = [item for chosen in selection.values() for item in chosen.items]
    plan.costs = estimate_cells(plan.cells, items, settings=settings, specs=specs,
                                speeds={label: speed for label, (speed, _) in
                                        plan.speeds.items()})
    return plan


def _models(spec: StudySpec) -> list[ModelEntry]:
    return list({entry.label: entry for entry in (*spec.solvers, *spec.generators)}.values())


def _speed(entry: ModelEntry, spec: ModelSpec | None, settings: RunSettings,
           registry: dict[str, ModelSpec], measure: bool, cache: SpeedCache,
           say: Callable[[str], None]) -> tuple[Speed | None, str]:
    """(speed, where it comes from) for one model: the cache, a measurement, or why none."""
    key = model_key(entry, spec)
    cached = cache.get(key)
    if cached is not None:
        return cached, f"cached, measured {cached.measured_at}"
    here, why = measurable(entry, spec, plugins.registry().entries["models"])
    if not here:
        return None, f"no estimate (not available offline: {why})"
    if not measure:
        return None, "no estimate (not measured yet: run --dry-run without --no-measure)"
    say(f"measuring {entry.label} on this machine (load, prefill, decode; once, then cached)")
    try:
        backend, _ = make_backend(entry.model, entry.args, registry=registry,
                                  defaults=settings.backend_defaults())
        speed = measure_speed(backend)
    except Exception as err:  # a model that cannot load here gets no estimate, not a crash
        log.debug("timing %s failed", entry.label, exc_info=True)
        return None, f"no estimate (timing failed: {type(err).__name__}: {err})"
    finally:
        backend = None
        gc.collect()  # free the model before the next one loads
    cache.put(key, speed)
    return speed, "measured now"


def duration(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``12s``; '?' for an unknown time."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _number(value: float) -> str:
    """A call count: whole numbers with thousands separators, estimates to one decimal."""
    return f"{value:,.0f}" if value >= 100 or float(value).is_integer() else f"{value:.1f}"


def _calls(cost: CellCost) -> str:
    parts = [f"{name} {_number(value)}" for name, value in cost.solver_calls.items()]
    if cost.cached_direct:
        parts.append(f"its {_number(cost.cached_direct)} direct answers from the study's cache")
    return (f"generator {_number(cost.generator_calls)}, solver "
            f"{_number(cost.total_solver_calls)} ({', '.join(parts)})")


def _what(cell: Cell) -> str:
    if cell.kind == "write":
        assert cell.generator is not None
        return (f"writes programs: generator {cell.generator.label} [{cell.family}], "
                f"solver {cell.solver.label}")
    if cell.kind == "replay":
        return f"replays {cell.package} for solver {cell.solver.label}"
    if cell.kind == "controls":
        return f"controls {', '.join(cell.controls)} and direct for solver {cell.solver.label}"
    return f"direct for solver {cell.solver.label}"


def progress(out: Path, cell: Cell, items: int) -> tuple[str | None, float]:
    """How far an earlier run of the study in ``out`` took the cell, in words (None: not
    started), and the share of its items that is done."""
    runs = read_runs(out / cell.folder)
    ended = runs.runs - runs.runs_unended
    spent = (f"{duration(runs.total_seconds)} in {ended} run{'s' if ended != 1 else ''}"
             if runs.total_seconds is not None else None)
    if runs.runs_unended:
        spent = (f"{spent}; " if spent else "") + (
            f"{runs.runs_unended} more started and did not end: running now, or killed")
    if cell_finished(out, cell):
        return "finished" + (f" ({spent})" if spent else ""), 1.0
    journaled = journal_records(out / cell.journal)
    if journaled:
        share = min(journaled / items, 1.0) if items else 0.0
        return f"{journaled} of {items} items in its journal" + (f" ({spent})" if spent
                                                                 else ""), share
    return None, 0.0


def format_plan(plan: Plan, out: Path) -> str:
    """What ``cgr study --dry-run`` prints: the grid, each cell with its command and cost, the
    total, and where each model's speed comes from."""
    spec = plan.spec
    lines = [f"study {spec.name}: {spec.source} (sha256 {spec.sha256[:12]})"]
    if spec.description:
        lines.append(f"  {spec.description.strip()}")
    lines.append("  tasks: " + ", ".join(
        f"{task} ({len(chosen.items)} of {chosen.total}, {chosen.split})"
        for task, chosen in plan.selection.items()))
    lines.append("  solvers: " + ", ".join(s.label for s in spec.solvers)
                 + (" (the first writes with each generator)" if spec.generators else ""))
    if spec.generators:
        lines.append(f"  generators: {', '.join(g.label for g in spec.generators)}; "
                     f"families: {', '.join(spec.families)}")
    lines.append(f"  controls: {', '.join(spec.controls) or 'none'}"
                 + (f"; seeds: {', '.join(map(str, spec.seeds))}" if spec.seeds != (None,)
                    else ""))
    lines.append(f"  output: {out}")
    lines.append(f"cells ({len(plan.cells)}), run in this order:")
    left: float | None = 0.0  # the estimate of what the output folder does not hold yet
    for number, cell in enumerate(plan.cells, 1):
        cost = plan.costs[cell.name]
        lines.append(f"  {number}. {cell.name}: {_what(cell)}")
        lines.append(f"     calls: {_calls(cost)}; estimated time "
                     + (duration(cost.seconds) if cost.seconds is not None else
                        f"unknown (no speed for {', '.join(cost.missing)})"))
        lines.append(f"     cd {shlex.quote(str(out))} && {shlex.join(cell.command)}")
        state, done = progress(out, cell, plan.items)
        if state:
            lines.append(f"     in {out}: {state}")
        if cost.seconds is not None:
            left = None if left is None else left + cost.seconds * (1 - done)
        else:
            left = None if done < 1 else left
    generator_calls = sum(c.generator_calls for c in plan.costs.values())
    solver_calls = sum(c.total_solver_calls for c in plan.costs.values())
    total = plan.estimated_seconds()
    lines.append(f"total: {_number(plan.items)} items; {_number(generator_calls)} generator "
                 f"calls, {_number(solver_calls)} solver calls (estimated); estimated time "
                 + (duration(total) if total is not None else
                    "unknown (a model has no measured speed, below)"))
    if out.is_dir() and total is not None and left is not None and left < total:
        lines.append(f"left in {out}: estimated time {duration(left)} (the cells not finished; "
                     "a cell's items in its journal count as done)")
    lines.append(f"model speeds on this machine ({machine_key()}):")
    for label, (speed, source) in plan.speeds.items():
        figures = (f"load {speed.load_seconds:.1f} s, prefill {speed.prefill_tokens_per_s:.0f} "
                   f"tok/s, decode {speed.decode_tokens_per_s:.1f} tok/s ({source})"
                   if speed else source)
        lines.append(f"  {label}: {figures}")
    lines.append("All times are estimates: measured load and token speeds times the calls "
                 "above (solver calls per program estimated from the family and each item's "
                 "options; docs/studies.md, 'The plan and its cost').")
    return "\n".join(lines)
