"""``cgr study``: a whole grid of cgr-eval runs from one YAML file, resumable, with one report.

:mod:`.spec` reads and checks the file, :mod:`.selection` picks the items, :mod:`.cells` lays
out the cells (programs written once per generator and family, replayed for every other
solver), :mod:`.cost` and :mod:`.speeds` estimate the cost, :mod:`.plan` puts it together for
``--dry-run``, :mod:`.runner` runs the cells (:mod:`.child`, :mod:`.state`) and the report.
"""

from __future__ import annotations

from .plan import Plan, format_plan, make_plan
from .runner import run_study
from .spec import StudyError, StudySpec, load_study

__all__ = ["Plan", "StudyError", "StudySpec", "format_plan", "load_study", "make_plan",
           "run_study"]
