"""Hand-written programs for every assisted status and run-time audit, against a scripted solver.

The solver here is a deterministic stand-in (the real backends have their own end-to-end tests);
programs run in the real sandbox.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cgr_plugin._paths import DATA_DIR
from cgr_plugin.data.items import MCQAItem
from cgr_plugin.data.loader import read_items
from cgr_plugin.models.backends import Generation
from cgr_plugin.record import CGRRecord, ChannelResult
from cgr_plugin.run.assisted import AssistedSettings, run_assisted, run_item_program
from cgr_plugin.sandbox.runner import SandboxLimits, isolation_level

from .conftest import REPO

pytestmark = pytest.mark.skipif(isolation_level() == "process", reason="needs bubblewrap")

ITEM = MCQAItem(id="t1", dataset="toy", question="Which planet is known as the Red Planet?",
                choices=("Venus", "Mars", "Jupiter"), answer="B")
SETTINGS = AssistedSettings(budget=4, limits=SandboxLimits(wall_seconds=3, cpu_seconds=3,
                                                           memory_bytes=256 << 20))


class ScriptedSolver:
    """Says "B" to everything; judges by whether the statement mentions Mars."""

    name = "scripted"

    def __init__(self, text="B"):
        self.text, self.prompts = text, []

    def generate(self, requests, *, progress=False):
        self.prompts += [r.prompt for r in requests]
        return [Generation(self.text, tokens_in=len(r.prompt.split()), tokens_out=1)
                for r in requests]

    def judge(self, prompts):
        return [0.9 if "Mars" in p else 0.1 for p in prompts]

    def describe(self):
        return {"backend": "scripted"}


def run(program, solver=None, settings=SETTINGS):
    return run_item_program(f"```python\n{program}\n```", ITEM, solver=solver or ScriptedSolver(),
                            settings=settings, direct_prompt=lambda it: f"Q: {it.question}",
                            direct_max_tokens=8)


JUDGE = '''GENERATOR_ANSWER = "B"
DIFFICULTY = "easy"

def solve(item, solver):
    return solver.pick({k: solver.judge(f"{item.question} {v}?") for k, v in item.options.items()})
'''


def test_program_that_derives_its_answer_from_the_solver():
    assisted, generator = run(JUDGE)
    assert (assisted.status, assisted.answer, assisted.solver_calls) == ("ok", "B", 3)
    assert (generator.status, generator.answer, generator.difficulty) == ("ok", "B", "easy")
    assert not assisted.audits["hard_coded"]
    assert [t["kind"] for t in assisted.trace] == ["judge"] * 3
    assert all("seconds" in t and "p_yes" in t for t in assisted.trace)
    assert assisted.isolation.startswith("bwrap")


def test_choose_uses_the_direct_prompt_and_extraction():
    solver = ScriptedSolver("Answer: C")
    assisted, _ = run("def solve(item, solver):\n    return solver.choose()\n", solver)
    assert assisted.answer == "C"
    assert solver.prompts == ["Q: Which planet is known as the Red Planet?"]
    assert assisted.trace[0]["extraction_rule"] == "explicit"
    assert assisted.tokens_in > 0 and assisted.tokens_out == 1


def test_hard_coded_letter_is_flagged_at_run_time_too():
    assisted, _ = run("def solve(item, solver):\n    return 'B'\n")
    assert assisted.status == "ok" and assisted.answer == "B"
    assert assisted.audits["hard_coded"] and assisted.audits["answered_without_solver"]


@pytest.mark.parametrize("body, status", [
    ("    return None", "uninformative"),
    ("    return 'Z'", "invalid_answer"),
    ("    return 2", "invalid_answer"),
    ("    return [solver.ask(str(i)) for i in range(10)]", "budget_exceeded"),
    ("    raise KeyError('x')", "runtime_error"),
    ("    while True:\n        pass", "timeout"),
    ("    return bytearray(1 << 40)", "memory_limit"),
])
def test_every_failure_has_a_status(body, status):
    assisted, _ = run(f"def solve(item, solver):\n{body}\n")
    assert assisted.status == status
    assert assisted.answer is None


def test_budget_refusal_is_recorded_even_if_the_program_carries_on():
    program = ("def solve(item, solver):\n    for i in range(6):\n        try:\n"
               "            solver.ask(str(i))\n        except BaseException:\n"
               "            pass\n    return 'B'\n")
    assisted, _ = run(program)
    assert assisted.status == "budget_exceeded" and assisted.solver_calls == 4


RAISES = '''def lookup(options, letter):
    return options[letter]

def solve(item, solver):
    return lookup(item.options, "Z")
'''


def test_a_program_that_raises_prints_its_traceback_into_the_assisted_record():
    assisted, _ = run(RAISES)
    assert assisted.status == "runtime_error" and assisted.error == "KeyError: 'Z'"
    assert 'line 5, in solve\n    return lookup(item.options, "Z")' in assisted.traceback
    assert "line 2, in lookup\n    return options[letter]" in assisted.traceback
    assert "in main" not in assisted.traceback  # the worker's own frames are left out
    assert assisted.sandbox["start"] in ("warm", "cold")
    assert assisted.sandbox["isolation"] == assisted.isolation
    line = CGRRecord(item=ITEM.to_json(), solver="s", assisted=assisted).to_json()
    assert CGRRecord.from_json(line).assisted.traceback == assisted.traceback


def test_what_a_program_writes_to_the_real_stderr_reaches_the_record():
    assisted, _ = run("import os\ndef solve(item, solver):\n"
                      "    os.write(2, b'native complaint')\n    return solver.choose()\n")
    assert assisted.status == "ok" and assisted.stderr == "native complaint"
    quiet, _ = run("def solve(item, solver):\n    return solver.choose()\n")
    assert quiet.stderr is None and quiet.traceback is None


def test_records_written_before_these_fields_still_load():
    line = CGRRecord(item=ITEM.to_json(), solver="s",
                     assisted=ChannelResult(status="runtime_error", error="boom")).to_json()
    old = json.loads(line)
    for field in ("traceback", "stderr", "sandbox"):
        del old["channels"]["assisted"][field]
    loaded = CGRRecord.from_json(json.dumps(old)).assisted
    assert (loaded.status, loaded.traceback, loaded.sandbox) == ("runtime_error", None, None)


def test_cgr_exec_prints_the_traceback_of_a_program_that_raises(tmp_path):
    (tmp_path / "program.py").write_text(RAISES)
    (tmp_path / "item.json").write_text(json.dumps(ITEM.to_json()))
    done = subprocess.run([sys.executable, "-m", "cgr_plugin", "exec",
                           str(tmp_path / "program.py"), "--item", str(tmp_path / "item.json")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-2000:]
    assisted = CGRRecord.from_json(done.stdout).assisted
    assert assisted.status == "runtime_error"
    assert "line 2, in lookup\n    return options[letter]" in assisted.traceback


def test_extraction_failures_are_final_statuses():
    assert run_item_program("no code here", ITEM, solver=ScriptedSolver(), settings=SETTINGS,
                            direct_prompt=str, direct_max_tokens=8)[0].status == "no_code"
    assert run("def solve(item, solver)\n    pass")[0].status == "syntax_error"


class ScriptedGenerator(ScriptedSolver):
    name = "generator"

    def __init__(self, outputs):
        super().__init__()
        self.outputs = outputs

    def generate(self, requests, *, progress=False):
        return [Generation(text) if text is not None else Generation(None, "context overflow")
                for text, _ in zip(self.outputs, requests, strict=True)]


@pytest.mark.parametrize("fallback, expected", [("none", None), ("direct", "C"),
                                                ("generator", "A")])
def test_fallback_is_recorded_beside_the_answer(fallback, expected):
    program = 'GENERATOR_ANSWER = "A"\ndef solve(item, solver):\n    return None\n'
    settings = AssistedSettings(budget=4, fallback=fallback, limits=SETTINGS.limits)
    direct = [ChannelResult(status="ok", answer="C")]
    ((assisted, generator),) = run_assisted(
        [ITEM], solver=ScriptedSolver(), generator=ScriptedGenerator([program]),
        settings=settings, direct_prompt=str, direct_max_tokens=8, direct=direct)
    assert assisted.status == "uninformative" and assisted.answer is None
    assert (assisted.fallback or {}).get("answer") == expected
    assert generator.answer == "A" and "Which planet" in generator.prompt


def test_generator_failure_is_recorded_not_raised():
    ((assisted, generator),) = run_assisted(
        [ITEM], solver=ScriptedSolver(), generator=ScriptedGenerator([None]), settings=SETTINGS,
        direct_prompt=str, direct_max_tokens=8)
    assert assisted.status == "generator_error" and generator.status == "error"


def _comparable(result: ChannelResult) -> dict:
    """A result without its timings (its provenance re-runs' too) and its sandbox's start,
    warm or cold (which differ run to run)."""
    data = dict(vars(result))
    data["trace"] = [{k: v for k, v in t.items() if k != "seconds"} for t in data["trace"] or []]
    data["sandbox"] = {k: v for k, v in (data["sandbox"] or {}).items() if k != "start"}
    if data["provenance"]:  # the re-runs' seconds are a timing too
        data["provenance"] = {**data["provenance"], "evidence": {
            k: v for k, v in data["provenance"]["evidence"].items() if k != "seconds"}}
    return {k: v for k, v in data.items() if k not in ("seconds", "model_seconds")}


def test_programs_run_concurrently_give_the_same_records_as_one_at_a_time():
    items = [MCQAItem(id=f"t{i}", dataset="toy", question=f"Which planet is Mars? ({i})",
                      choices=("Venus", "Mars", "Jupiter"), answer="B") for i in range(6)]
    programs = [JUDGE, 'def solve(item, solver):\n    return solver.choose()\n',
                'def solve(item, solver):\n    raise ValueError("boom")\n', JUDGE,
                'def solve(item, solver):\n    return "Z"\n', JUDGE]

    def run_with(concurrency):
        settings = AssistedSettings(budget=4, limits=SETTINGS.limits, concurrency=concurrency)
        return run_assisted(items, solver=ScriptedSolver(), generator=ScriptedGenerator(programs),
                            settings=settings, direct_prompt=str, direct_max_tokens=8)

    one, four = run_with(1), run_with(4)
    assert [a.status for a, _ in four] == ["ok", "ok", "runtime_error", "ok", "invalid_answer",
                                           "ok"]
    assert [(_comparable(a), _comparable(g)) for a, g in one] == [
        (_comparable(a), _comparable(g)) for a, g in four]


def test_a_program_computes_on_the_exact_payload():
    item = next(it for it in read_items(DATA_DIR / "timeseriesexam/test.jsonl")
                if "ts1" in it.payload["series"])
    series = item.payload["series"]
    expected = (repr(sum(series["ts1"])), repr(series["ts2"][-1]), len(series["ts2"]))
    program = ("def solve(item, solver):\n"
               "    s = item.payload['series']\n"
               "    seen = (repr(sum(s['ts1'])), repr(s['ts2'][-1]), len(s['ts2']))\n"
               f"    return item.letters[0] if seen == {expected!r} else None\n")
    assisted, _ = run_item_program(f"```python\n{program}\n```", item, solver=ScriptedSolver(),
                                   settings=SETTINGS, direct_prompt=lambda it: it.question,
                                   direct_max_tokens=8)
    assert (assisted.status, assisted.answer) == ("ok", item.letters[0])
