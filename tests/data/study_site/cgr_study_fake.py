"""Scripted models for the study tests (tests/test_study_run.py): no weights, instant, and the
same answer every time, so a study's cells run through real cgr-eval without a real model.

Installed by putting this folder on PYTHONPATH (its dist-info declares the ``cgr`` entry point).

- ``study-solver`` answers "Answer: B" and judges every statement 0.5; ``study-solver-c``
  answers "Answer: C";
- ``study-writer`` writes one program that asks the solver (``solver.choose()``);
- ``study-broken`` fails to load, as a model with a missing file would.

``CGR_STUDY_FAKE_DELAY`` (seconds) slows every call down, so a test can interrupt a cell.
"""

from __future__ import annotations

import os
import time

from cgr_plugin import hookimpl

PROGRAM = """```python
GENERATOR_ANSWER = "A"
DIFFICULTY = "easy"

def solve(item, solver):
    return solver.choose()
```"""


class Scripted:
    def __init__(self, name: str, reply: str, args: dict) -> None:
        self.name, self.reply, self.args = name, reply, dict(args)

    def _wait(self, calls: int) -> None:
        time.sleep(float(os.environ.get("CGR_STUDY_FAKE_DELAY", "0")) * calls)

    def generate(self, requests, *, progress=False):
        from cgr_plugin.models.base import Generation

        self._wait(len(requests))
        if callable(progress):
            progress(len(requests))
        return [Generation(self.reply, tokens_in=len(r.prompt) // 4, tokens_out=4)
                for r in requests]

    def judge(self, prompts):
        self._wait(len(prompts))
        return [0.5 for _ in prompts]

    def describe(self):
        return {"backend": self.name, **self.args}


def _broken(args):
    raise RuntimeError("study-broken: this model always fails to load")


@hookimpl
def register_models(register):
    register("study-solver", lambda args: Scripted("study-solver", "Answer: B", args))
    register("study-solver-c", lambda args: Scripted("study-solver-c", "Answer: C", args))
    register("study-writer", lambda args: Scripted("study-writer", PROGRAM, args))
    register("study-broken", _broken)
