"""``cgr-eval validate``: build each selected task as a run would, without a model.

lm-eval's own ``validate`` only checks that the names exist; this one parses each task, loads
and normalizes its data, and renders its first item's direct prompt (as the default solver is
asked it), printing ``ok`` with that prompt, or ``FAIL``, per task.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from .._paths import TASKS_DIR
from ..data.items import MCQAItem
from ..models.registry import load_registry
from ..run.direct import direct_prompt, direct_settings
from ..run.settings import DEFAULT_SOLVER

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
            prompt = _first_prompt(docs[0]) if "payload_json" in docs[0] else None
            print(f"ok    {name}: {len(docs)} items")
            if prompt is not None:
                print(f"      the first item's direct prompt ({DEFAULT_SOLVER}):")
                print("\n".join(f"      | {line}".rstrip() for line in prompt.splitlines()))
        except (TypeError, KeyError, ValueError, OSError) as err:  # CGRErrors are ValueErrors
            # a validator reports what building the task raised; that is its whole job
            failed += 1
            print(f"FAIL  {name}: {err}", file=sys.stderr)
    return 1 if failed else 0


def _first_prompt(doc: dict) -> str:
    """The direct prompt of a cgr document, as the default solver is asked it."""
    spec = load_registry().get(DEFAULT_SOLVER)
    return direct_prompt(MCQAItem.from_doc(doc), direct_settings(spec), ())
