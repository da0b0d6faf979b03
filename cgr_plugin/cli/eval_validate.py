"""``cgr-eval validate``: build each selected task as a run would, without a model.

lm-eval's own ``validate`` only checks that the names exist; this one parses each task, loads
and normalizes its data, and renders its first prompt, printing ``ok`` or ``FAIL`` per task.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from .._paths import TASKS_DIR

__all__ = ["deep_validate"]


def deep_validate(patterns: Sequence[str], include_paths: Sequence[Path]) -> int:
    """Exit status 1 when no task matches or any matched task fails to build."""
    from lm_eval.tasks import TaskManager

    # The packaged tasks first: a user's own cgr_x.yaml overrides the packaged one (later wins).
    roots = [str(TASKS_DIR), *map(str, include_paths)]
    manager = TaskManager(include_path=roots, include_defaults=False)
    names = manager.match_tasks(list(patterns))
    if not names:
        print("No cgr tasks matched " + " ".join(patterns), file=sys.stderr)
        return 1
    failed = 0
    for name in names:
        try:
            task = manager.load([name])["tasks"][name]
            docs = list(task.eval_docs)
            task.doc_to_text(docs[0])
            print(f"ok    {name}: {len(docs)} items")
        except (TypeError, KeyError, ValueError, OSError) as err:  # CGRErrors are ValueErrors
            # a validator reports what building the task raised; that is its whole job
            failed += 1
            print(f"FAIL  {name}: {err}", file=sys.stderr)
    return 1 if failed else 0
