"""Controls measured in a run of their own, paired with the program runs of the same solver.

The controls that need no program (``cot``, ``fixed:NAME``) answer the same whatever family or
generator wrote the programs, so ``cgr study`` runs them once per solver, in a run without
programs (``channels=direct``), instead of once per family. For the report to show assisted -
control, each program run's item gets the control result of that run: same task, same solver,
same item. A control is paired only where the runs that have it agree on the result (one run,
or several with the same answer), and never replaces a control the program run measured
itself.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

from .runs import ItemOutcome

__all__ = ["pair_separate_controls"]


def pair_separate_controls(outcomes: Sequence[ItemOutcome]) -> list[ItemOutcome]:
    """``outcomes`` with each program run's items given the controls that a run without
    programs measured on the same (task, solver, item); the runs themselves stay as they are."""
    measured: dict[tuple[str, str, str], dict[str, list[tuple]]] = defaultdict(
        lambda: defaultdict(list))
    for o in outcomes:
        if o.assisted_status == "not_run":
            for name, result in o.controls.items():
                measured[(o.task, o.solver, o.item_id)][name].append(result)
    out = []
    for o in outcomes:
        found = measured.get((o.task, o.solver, o.item_id))
        if o.assisted_status == "not_run" or not found:
            out.append(o)
            continue
        extra = {name: results[0] for name, results in found.items()
                 if name not in o.controls and len(set(results)) == 1}
        out.append(replace(o, controls={**o.controls, **extra}) if extra else o)
    return out
