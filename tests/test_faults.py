"""Fault injection: broken models and bad generator output cost at most their own item, which
is recorded with a status; no fault crashes the run or loses an item.

The count of FAULTS is the "faults survived" figure of docs/reliability.md. Full disks
(test_full_disk.py), kill -9 then resume (test_e2e_determinism.py, test_e2e_resume.py), two
runs into one folder (test_cli.py) and failing servers (test_e2e_server.py) are tested beside
these.
"""

from __future__ import annotations

import pytest

from cgr_plugin.data.items import MCQAItem
from cgr_plugin.models.backends import Generation, RetryingBackend
from cgr_plugin.run.assisted import AssistedSettings, run_assisted
from cgr_plugin.sandbox import isolation
from cgr_plugin.sandbox.runner import SandboxLimits, isolation_level

from .conftest import REPO

needs_bwrap = pytest.mark.skipif(isolation_level() == "process", reason="needs bubblewrap")

ITEMS = [MCQAItem(id=f"f{i}", dataset="toy", question=f"Which is {i}?",
                  choices=("x", "y", "z"), answer="B") for i in range(3)]
SETTINGS = AssistedSettings(budget=4, concurrency=3, limits=SandboxLimits(
    wall_seconds=4, cpu_seconds=4, memory_bytes=256 << 20))
GOOD = ('```python\nGENERATOR_ANSWER = "B"\ndef solve(item, solver):\n'
        '    return solver.choose()\n```')


class Model:
    """A solver/generator whose answers (or failures) are scripted per call."""

    name = "scripted"

    def __init__(self, outputs=None, fail=None, judge_fail=None, wrong_count=False):
        self.outputs, self.fail, self.judge_fail = outputs, fail, judge_fail
        self.wrong_count = wrong_count

    def generate(self, requests, *, progress=False):
        if self.fail:
            raise self.fail
        if self.wrong_count:  # one answer short, whatever the batch
            return [Generation("B")] * (len(requests) - 1)
        if self.outputs is not None:
            return [o if isinstance(o, Generation) else Generation(o) for o in self.outputs]
        return [Generation("B") for _ in requests]

    def judge(self, prompts):
        if self.judge_fail:
            raise self.judge_fail
        return [0.5 for _ in prompts]

    def describe(self):
        return {"backend": "scripted"}


def nested(depth):
    expression = "(" * depth + "1" + ")" * depth
    return f"```python\ndef solve(item, solver):\n    return {expression}\n```"


# name, generator outputs (one per item) or a generator fault, solver fault, statuses allowed
FAULTS = [
    ("empty generator output", ["", "", ""], None, {"no_code"}),
    ("whitespace only", ["  \n\t\n", "\n", " "], None, {"no_code"}),
    ("binary garbage", ["\x00\xff\ufffd" * 200, "\x1b[31m" * 100, "\ud800"], None,
     {"no_code", "syntax_error"}),
    ("prose without code", ["I think the answer is B because..."] * 3, None, {"no_code"}),
    ("huge output (5 MB)", ["x = 1\n" * 900_000, "y" * 5_000_000, GOOD + "#" * 5_000_000],
     None, {"no_code", "syntax_error", "missing_entry", "ok"}),
    ("unterminated fence", ["```python\ndef solve(item, solver):\n    return 'B'"] * 3, None,
     {"ok"}),
    ("parser recursion bomb", [nested(5000), nested(200), nested(100_000)], None,
     {"syntax_error", "runtime_error", "invalid_answer", "crashed"}),
    ("null bytes in code", ["```python\ndef solve(item, solver):\n    return 'B'\x00\n```"] * 3,
     None, {"syntax_error", "no_code"}),
    ("generator fails per item", [Generation(None, "HTTP 500")] * 3, None,
     {"generator_error"}),
    ("generator raises", ConnectionError("connection reset"), None, {"generator_error"}),
    ("generator answers too few", "wrong_count", None, {"generator_error"}),
    ("solver raises", [GOOD] * 3, ConnectionError("solver down"), {"runtime_error"}),
    ("solver returns error values", [GOOD] * 3, "error_values", {"runtime_error"}),
    ("solver answers too few", [GOOD] * 3, "wrong_count", {"runtime_error"}),
    ("judge raises", ['```python\ndef solve(item, solver):\n    return solver.pick('
                      '{"B": solver.judge("x")})\n```'] * 3, "judge", {"runtime_error"}),
]


def _models(generator_fault, solver_fault):
    if isinstance(generator_fault, Exception):
        generator = Model(fail=generator_fault)
    elif generator_fault == "wrong_count":
        generator = Model(wrong_count=True)
    else:
        generator = Model(outputs=generator_fault)
    solver = {None: Model(), "wrong_count": Model(wrong_count=True),
              "error_values": Model(outputs=[Generation(None, "HTTP 503")]),
              "judge": Model(judge_fail=TimeoutError("judge timed out"))}.get(solver_fault)
    if solver is None:
        solver = Model(fail=solver_fault)
    return (RetryingBackend(generator, retries=1, backoff=0.01),
            RetryingBackend(solver, retries=1, backoff=0.01))


@needs_bwrap
@pytest.mark.parametrize("name, generator_fault, solver_fault, statuses", FAULTS,
                         ids=[f[0] for f in FAULTS])
def test_fault_costs_only_its_items_and_is_recorded(name, generator_fault, solver_fault,
                                                    statuses):
    generator, solver = _models(generator_fault, solver_fault)
    results = run_assisted(ITEMS, solver=solver, generator=generator, settings=SETTINGS,
                           direct_prompt=lambda item: item.question, direct_max_tokens=8)
    assert len(results) == len(ITEMS)  # no item lost
    for assisted, own in results:
        assert assisted.status in statuses, (assisted.status, assisted.error)
        assert assisted.status == "ok" or assisted.answer is None
        assert own.status  # the generator side is recorded too


def test_a_host_without_a_usable_sandbox_costs_each_program_not_the_run(monkeypatch):
    """No bubblewrap and no opt-in to weak isolation: every item is still recorded, its
    program as not run by the sandbox, with how to fix it; the generator side as usual."""
    monkeypatch.setattr(isolation, "bwrap_problem", lambda: "bubblewrap (bwrap) is not installed")
    monkeypatch.delenv(isolation.WEAK_ENV, raising=False)
    generator, solver = _models([GOOD] * 3, None)
    results = run_assisted(ITEMS, solver=solver, generator=generator, settings=SETTINGS,
                           direct_prompt=lambda item: item.question, direct_max_tokens=8)
    assert len(results) == len(ITEMS)
    for assisted, own in results:
        assert (assisted.status, assisted.answer, assisted.isolation) == ("crashed", None, None)
        assert "apt-get install bubblewrap" in assisted.error
        assert assisted.sandbox["error"] == "SandboxUnavailable"
        assert (own.status, own.answer) == ("ok", "B")


def test_the_documented_fault_figure_is_this_table():
    doc = (REPO / "docs" / "reliability.md").read_text(encoding="utf-8")
    assert f"faults survived: **{len(FAULTS)}/{len(FAULTS)}**" in doc
