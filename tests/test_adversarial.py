"""The conformance suite's catalogue of hostile programs (cgr_plugin.sandbox.conformance) run
against the built-in sandbox. Each one attacks; if the attack worked it answers or prints
``ESCAPED``. Every one must be contained and recorded with one of the statuses listed for it,
and the host must be untouched. A program's way through the whole assisted path (generator
output -> extraction -> audits -> sandbox -> solver calls under a budget) is checked too.

The count of this catalogue is the "adversarial programs contained" figure of
docs/reliability.md (checked below).
"""

from __future__ import annotations

import pytest

from cgr_plugin import plugins
from cgr_plugin.data.items import MCQAItem
from cgr_plugin.models.backends import Generation
from cgr_plugin.run.assisted import AssistedSettings, run_item_program
from cgr_plugin.sandbox import as_sandbox, conformance
from cgr_plugin.sandbox.runner import SandboxLimits, isolation_level

from .conftest import REPO

pytestmark = pytest.mark.skipif(isolation_level() == "process", reason="needs bubblewrap")
CATALOGUE = conformance.CATALOGUE

ITEM = MCQAItem(id="adv1", dataset="toy", question="Which number is prime?",
                choices=("4", "6", "7", "9"), answer="C")
SETTINGS = AssistedSettings(budget=4, limits=SandboxLimits(
    wall_seconds=4, cpu_seconds=4, memory_bytes=256 << 20, processes=16, output_chars=4000))


class Solver:
    name = "scripted"

    def generate(self, requests, *, progress=False):
        return [Generation("C") for _ in requests]

    def judge(self, prompts):
        return [0.5 for _ in prompts]

    def describe(self):
        return {"backend": "scripted"}


def _run(program: str):
    return run_item_program(f"```python\n{program}\n```", ITEM, solver=Solver(),
                            settings=SETTINGS, direct_prompt=lambda it: it.question,
                            direct_max_tokens=8)


@pytest.mark.parametrize("attack", CATALOGUE, ids=[f"{a.category}: {a.name}" for a in CATALOGUE])
def test_hostile_program_is_contained(attack):
    verdict = conformance.run_attack(as_sandbox(plugins.sandbox("bwrap"), "bwrap"), attack)
    assert verdict.passed, verdict.why
    assert verdict.isolation and verdict.isolation.startswith("bwrap")


def test_nothing_a_program_leaves_behind_reaches_the_next_program():
    program = conformance.attack("leave a file for the next program").program
    first, _ = _run(program)
    second, _ = _run(program)
    assert (first.status, second.status, second.answer) == ("ok", "ok", "A")
    assert first.isolation.startswith("bwrap") and first.sandbox["backend"] == "bwrap"


@pytest.mark.parametrize("name", ["ask far more than the budget", "talk to the parent directly"])
def test_the_assisted_path_contains_attacks_on_the_budget_and_the_protocol(name):
    """Through extraction, audits and the item's own solver budget, as programs really run."""
    hostile = conformance.attack(name)
    assisted, _ = _run(hostile.program)
    assert assisted.status in hostile.statuses, (assisted.status, assisted.error)
    assert assisted.solver_calls <= SETTINGS.budget


def test_the_documented_containment_figure_is_this_catalogue():
    doc = (REPO / "docs" / "reliability.md").read_text(encoding="utf-8")
    n = len(CATALOGUE)
    assert f"adversarial programs contained: **{n}/{n}**" in doc
    assert len({a.category for a in CATALOGUE}) >= 10  # every category of the issue


@pytest.mark.parametrize("name", ["an answer JSON cannot encode", "a lone surrogate as the answer"])
def test_an_answer_no_record_can_hold_is_an_invalid_answer(name):
    assisted, _ = _run(conformance.attack(name).program)
    assert assisted.status == "invalid_answer", (assisted.status, assisted.error)
    assisted.error.encode("utf-8")  # storable: no lone surrogate left
