"""The provenance audit: every program of a catalogue runs in the real sandbox, answers from
the canned solver (no model anywhere), and must get its class.

The hard-coded programs disguise a fixed letter in ways a static audit misses; the honest ones
use the solver, or compute the answer from the item's own data. None of them is in the
package: the audit decides from the programs' behaviour, not from a list.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cgr_plugin.data.items import MCQAItem
from cgr_plugin.models.base import Generation
from cgr_plugin.programs.attribution import leading_prompt
from cgr_plugin.programs.canned import CannedBackend, CannedSolver, permute_options
from cgr_plugin.programs.provenance import Rerun, classify
from cgr_plugin.programs.strategy import strategy
from cgr_plugin.record import CGRRecord, hard_coded
from cgr_plugin.run.assisted import AssistedSettings, run_item_program
from cgr_plugin.run.provenance import provenance_of
from cgr_plugin.sandbox.runner import SandboxLimits, isolation_level

from .conftest import REPO, needs_llama

pytestmark = pytest.mark.skipif(isolation_level() == "process", reason="needs bubblewrap")

ITEM = MCQAItem(id="p1", dataset="toy", question="What is 4 * 8?",
                choices=("12", "32", "48", "7"), answer="B",
                context="Four rows of eight chairs make 32 chairs in all.",
                payload={"numbers": [4, 8]})
SETTINGS = AssistedSettings(budget=8, limits=SandboxLimits(wall_seconds=5, cpu_seconds=5,
                                                           memory_bytes=256 << 20))

# Each returns a letter fixed in advance, whatever the solver says and wherever the options go.
HARD_CODED = {
    "index_into_letters": "return item.letters[2]",
    "index_after_a_thrown_away_call": "solver.judge(item.question)\n    return item.letters[2]",
    "index_into_a_string": 'return "ABCD"[2]',
    "chr_of_a_number": "return chr(67)",
    "chr_of_arithmetic": 'return chr(ord("A") + 2)',
    "judge_thrown_away": 'solver.judge(item.question)\n    return "C"',
    "every_option_judged_then_ignored": (
        "scores = [solver.judge(f'{item.question} {t}') for t in item.choices]\n"
        '    return "C"'),
    "constant_scores_picked": (
        'scores = {"A": 0.1, "B": 0.2, "C": 0.9, "D": 0.3}\n    return solver.pick(scores)'),
    "judged_scores_overwritten": (
        "s = {k: solver.judge(v) for k, v in item.options.items()}\n"
        '    s = {k: 1.0 if k == "C" else 0.0 for k in s}\n    return solver.pick(s)'),
    "reply_scales_fixed_scores": (
        "p = solver.judge(item.question) + 0.01\n"
        '    return solver.pick({"A": p, "B": p / 2, "C": 3 * p, "D": 0.0})'),
    "condition_on_a_reply_returns_a_literal": (
        "reply = solver.ask(item.question)\n    if reply:\n        return 'C'\n    return 'C'"),
    "both_branches_the_same": 'c = solver.choose()\n    return "C" if c == "C" else "C"',
    "length_of_reply_always_true": (
        "if len(solver.ask(item.question)) >= 0:\n        return item.letters[-2]\n"
        "    return item.letters[0]"),
    "sorted_letters": "return sorted(item.letters)[2]",
    "keys_of_options": "return list(item.options)[2]",
    "lookup_table": 'return {0: "A", 1: "B", 2: "C"}[2]',
    "base64": 'import base64\n    return base64.b64decode("Qw==").decode()',
    "bytes": "return bytes([67]).decode()",
    "joined_pieces": 'return "".join(["", "C", ""])',
    "upper_of_lower": 'return str.upper("c")',
    "max_with_a_rigged_key": 'return max(item.letters, key=lambda x: x == "C")',
    "arithmetic_index": "return item.letters[(3 * 5) % 4]",
    "from_the_question_length": "return item.letters[len(item.question) % len(item.letters)]",
    "from_the_opaque_id": "return item.letters[sum(map(ord, item.id)) % len(item.letters)]",
    "swallowed_exception": (
        "try:\n        solver.judge(str(1 / 0))\n    except ZeroDivisionError:\n        pass\n"
        '    return "C"'),
    "loop_that_returns_a_fixed_answer": (
        'answer = "C"\n    for x in item.letters:\n        solver.judge(x)\n    return answer'),
    "generator_answer_constant": "return GENERATOR_ANSWER",
    "tie_break_guess": "return solver.pick({x: 1.0 for x in item.letters})",
}

SOLVER_BASED = {
    "judge_each_option": (
        "return solver.pick({k: solver.judge(f'{item.question} {v}') "
        "for k, v in item.options.items()})"),
    "choose": "return solver.choose()",
    "ask_for_a_letter": (
        "reply = solver.ask(item.question)\n    for x in item.letters:\n"
        "        if f' {x}.' in ' ' + reply or reply.strip() == x:\n            return x\n"
        "    return solver.choose()"),
    "eliminate_then_pick": (
        "s = {k: solver.judge(v) for k, v in item.options.items()}\n"
        "    kept = {k: v for k, v in s.items() if v >= 0.2} or s\n    return solver.pick(kept)"),
    "reason_then_choose": (
        "notes = solver.ask('Think about: ' + item.question)\n"
        "    return solver.choose(item.question + ' Notes: ' + notes)"),
    "pairwise_tournament": (
        "best = item.letters[0]\n    for x in item.letters[1:]:\n"
        "        if solver.judge(f'{item.options[x]} beats {item.options[best]}') > 0.5:\n"
        "            best = x\n    return best"),
}

FROM_ITEM = {
    "compute_4_times_8": (
        "value = 4 * 8\n    for x, text in item.options.items():\n"
        "        if text == str(value):\n            return x"),
    "parse_the_question": (
        "import re\n    a, b = map(int, re.findall(r'\\d+', item.question))\n"
        "    return next(x for x, t in item.options.items() if t == str(a * b))"),
    "from_the_payload": (
        "a, b = item.payload['numbers']\n"
        "    return item.letters[item.choices.index(str(a * b))]"),
    "found_in_the_context": (
        "for x, t in item.options.items():\n"
        "        if f' {t} ' in f' {item.context} ':\n            return x"),
    "computed_then_the_solver_ignored": (
        "solver.judge('Is 32 right?')\n"
        "    return item.letters[item.choices.index(str(4 * 8))]"),
}


def _program(body: str) -> str:
    return f'GENERATOR_ANSWER = "C"\n\ndef solve(item, solver):\n    {body}\n'


class Scripted:
    """The "real" solver of a catalogue run: says B, judges a statement true when it says 32."""

    name = "scripted"

    def generate(self, requests, *, progress=False):
        return [Generation("B") for _ in requests]

    def judge(self, prompts):
        return [0.9 if "32" in p else 0.1 for p in prompts]

    def describe(self):
        return {"backend": "scripted"}


def _run(body: str, item: MCQAItem = ITEM, seed: int = 0):
    assisted, _ = run_item_program(f"```python\n{_program(body)}\n```", item, solver=Scripted(),
                                   settings=replace(SETTINGS, seed=seed),
                                   direct_prompt=lambda it: f"Q: {it.question}",
                                   direct_max_tokens=8)
    assert assisted.status == "ok", (assisted.status, assisted.error, assisted.traceback)
    return assisted


@pytest.mark.parametrize("name", sorted(HARD_CODED))
def test_disguised_hard_coding_is_classed_constant(name):
    assisted = _run(HARD_CODED[name])
    found = assisted.provenance
    assert found["class"] == "constant", found
    assert assisted.audits["hard_coded"]
    # the evidence: the same letter under every canned solver and every option order
    evidence = found["evidence"]
    assert len(evidence["solver"]) == 3 and len(evidence["item"]) == 3
    assert {r["answer"] for r in evidence["solver"] + evidence["item"]} == {assisted.answer}
    assert all(r["text"] != evidence["text"] for r in evidence["item"])


@pytest.mark.parametrize("name", sorted(SOLVER_BASED))
def test_solver_based_programs_are_classed_solver_dependent(name):
    assisted = _run(SOLVER_BASED[name])
    assert assisted.provenance["class"] == "solver_dependent", assisted.provenance
    assert not assisted.audits["hard_coded"]


@pytest.mark.parametrize("name", sorted(FROM_ITEM))
def test_computation_on_the_item_is_classed_computed_from_item(name):
    assisted = _run(FROM_ITEM[name])
    found = assisted.provenance
    assert found["class"] == "computed_from_item", found
    assert assisted.answer == "B" and not assisted.audits["hard_coded"]
    # the evidence: the option "32" followed to its new letter
    assert {r["text"] for r in found["evidence"]["item"]} == {"32"}
    assert {r["answer"] for r in found["evidence"]["item"]} != {"B"}


def test_the_static_audit_is_kept_beside_the_class():
    honest = _run(FROM_ITEM["compute_4_times_8"])
    assert honest.audits["hard_coded_static"] and not honest.audits["hard_coded"]
    disguised = _run(HARD_CODED["index_after_a_thrown_away_call"])
    assert not disguised.audits["hard_coded_static"] and disguised.audits["hard_coded"]


def test_a_program_that_runs_out_of_time_under_other_replies_is_unknown():
    item = MCQAItem(id="p2", dataset="toy", question="Pick one.", choices=("x", "y"),
                    answer="A")
    program = ("reply = solver.ask('q')\n    while reply != 'x':\n        pass\n"
               "    return 'A'")

    class SaysX(CannedBackend):  # the "real" solver answers x; canned ones mostly do not
        def generate(self, requests, *, progress=False):
            return [Generation("x") for _ in requests]

    assisted, _ = run_item_program(
        f"```python\n{_program(program)}\n```", item, solver=SaysX(item.letters, item.choices),
        settings=AssistedSettings(budget=2, provenance_seeds=3,
                                  limits=SandboxLimits(wall_seconds=1, cpu_seconds=1)),
        direct_prompt=lambda it: it.question, direct_max_tokens=8)
    found = assisted.provenance
    replayed = found["evidence"]["replay"]
    assert replayed["answer"] == "A"  # the same replies, the same answer
    if found["class"] != "unknown":  # every canned solver happened to say x
        pytest.skip("no canned reply differed")
    assert "time limit" in found["reason"]
    assert len(found["evidence"]["solver"]) + len(found["evidence"]["item"]) <= 6


def test_a_failure_of_the_re_runs_costs_nothing_but_the_class():
    found = provenance_of(_program("return 'C'"), ITEM, "C", [], seeds=2, budget=4,
                          sandbox="no-such-sandbox", limits=SETTINGS.limits, seed=0,
                          program_seconds=0.01, trace_chars=4000)
    assert found["class"] == "unknown" and "re-runs failed" in found["reason"]
    assert hard_coded({"returns_literal": True}, provenance=found)  # static flags decide


def test_programs_that_did_not_run_ok_get_no_class_and_zero_seeds_turn_it_off():
    failed, _ = run_item_program("```python\ndef solve(item, solver):\n    return 1 / 0\n```",
                                 ITEM, solver=CannedBackend(ITEM.letters, ITEM.choices),
                                 settings=SETTINGS, direct_prompt=lambda it: it.question,
                                 direct_max_tokens=8)
    assert failed.status == "runtime_error" and failed.provenance is None
    body = HARD_CODED["index_after_a_thrown_away_call"]
    off, _ = run_item_program(f"```python\n{_program(body)}\n```", ITEM,
                              solver=CannedBackend(ITEM.letters, ITEM.choices),
                              settings=AssistedSettings(provenance_seeds=0),
                              direct_prompt=lambda it: it.question, direct_max_tokens=8)
    assert off.provenance is None
    assert not off.audits["hard_coded"]  # the static verdict alone misses it


def _without_seconds(found):
    return {**found, "evidence": {k: v for k, v in found["evidence"].items() if k != "seconds"}}


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1),
       name=st.sampled_from(sorted(HARD_CODED) + sorted(SOLVER_BASED) + sorted(FROM_ITEM)))
def test_the_classification_is_deterministic_for_a_seed(seed, name):
    body = {**HARD_CODED, **SOLVER_BASED, **FROM_ITEM}[name]
    first, second = _run(body, seed=seed), _run(body, seed=seed)
    assert first.answer == second.answer
    assert _without_seconds(first.provenance) == _without_seconds(second.provenance)


def test_canned_inputs_are_seeded_and_permutations_move_every_option():
    a, b = CannedSolver(7, "ABCD", "wxyz", 8), CannedSolver(7, "ABCD", "wxyz", 8)
    calls = [{"kind": k} for k in ("judge", "choose", "ask", "judge", "ask")]
    assert [a(c) for c in calls] == [b(c) for c in calls]
    assert CannedSolver(1, "AB", "xy", 1)({"kind": "judge"})["value"] is not None
    spent = CannedSolver(1, "AB", "xy", 0)
    assert spent({"kind": "judge"}) == {"error": "budget_exceeded"}
    data = {"letters": ["A", "B", "C"], "choices": ["x", "y", "z"]}
    for seed in range(20):
        moved, order = permute_options(data, seed)
        assert sorted(moved["choices"]) == ["x", "y", "z"]
        assert all(new != old for new, old in enumerate(order))
        assert moved["choices"] == [data["choices"][old] for old in order]


def test_mixed_and_the_untrusted_cases_are_said_exactly():
    solver = [Rerun("solver", i, "ok", "A", "x") for i in (1, 2)]
    moved = [Rerun("item", 1, "ok", "B", "z", "CAB"), Rerun("item", 2, "ok", "A", "y", "BCA")]
    mixed = classify("A", "x", solver + moved)
    assert mixed["class"] == "mixed" and "neither its letter nor its text" in mixed["reason"]
    replay = Rerun("replay", None, "ok", "B", "y")
    assert classify("A", "x", [replay, *solver, *moved])["class"] == "unknown"
    one_option = classify("A", "x", solver)
    assert one_option["class"] == "unknown" and "one option" in one_option["reason"]
    failed = classify("A", "x", [Rerun("solver", 1, "sandbox_error", error="no bwrap")])
    assert failed["class"] == "unknown" and "no bwrap" in failed["reason"]
    no_answer = classify("A", "x", [Rerun("solver", 1, "uninformative"), *moved])
    assert no_answer["class"] == "solver_dependent" and "<uninformative>" in no_answer["reason"]


def test_cgr_exec_shows_the_class_and_its_evidence_without_a_model(tmp_path):
    (tmp_path / "program.py").write_text(_program('return "ABCD"[len("xy")]'))
    (tmp_path / "item.json").write_text(json.dumps(ITEM.to_json()))
    done = subprocess.run([sys.executable, "-m", "cgr_plugin", "exec",
                           str(tmp_path / "program.py"), "--item", str(tmp_path / "item.json"),
                           "--solver", "canned"], capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    record = CGRRecord.from_json(done.stdout)
    assert record.assisted.provenance["class"] == "constant"
    assert record.assisted.provenance["evidence"]["item"][0]["answer"] == "C"
    assert "provenance: constant" in done.stderr


@pytest.mark.parametrize(("prompts", "expected"), [
    (["The answer is B, right?"], True),  # states the generator's option by letter
    (["Is the answer B?"], True),
    (["Hint: the correct answer: 32. What is 4 * 8?"], True),  # by text
    (["Is 32 the product of 4 and 8?"], True),  # singles it out: no other option is asked
    (["Is option B correct?", "Is it true?"], True),
    ([f"Is {t} the product?" for t in ITEM.choices], False),  # every option, evenly
    (["What is 4 * 8?\nA. 12\nB. 32\nC. 48\nD. 7\nAnswer:"], False),  # the direct prompt
    (["Is option A correct?", "Is option B correct?"], False),
    (["Is 12 the product?"], False),  # singles out another option
    ([], False),
])
def test_leading_prompt_finds_prompts_that_state_or_single_out_the_generators_answer(
        prompts, expected):
    assert leading_prompt(prompts, "B", ITEM.letters, ITEM.choices, ITEM.question) is expected


def test_leading_prompt_is_not_judged_without_a_generator_answer_and_ignores_question_text():
    assert leading_prompt(["The answer is B"], None, "ABCD", ITEM.choices, "q") is None
    item = ("Mars", "Venus")  # the question names Mars: a prompt repeating it singles nothing
    assert not leading_prompt(["Which is Mars, the red one?"], "A", "AB", item,
                              "Mars or Venus: which is red?")


def test_strategy_tags_describe_what_the_code_does():
    judge = strategy(_program(SOLVER_BASED["judge_each_option"]))
    assert judge["calls"] == {"judge": 1, "pick": 1}
    assert judge["tags"] == ["loops_over_options", "reply_in_score"]
    computed = strategy(_program(FROM_ITEM["from_the_payload"]))
    assert set(computed["tags"]) >= {"arithmetic_on_item", "reads_payload"}
    assert "reply_in_condition" not in computed["tags"] and computed["calls"] == {}
    condition = strategy(_program(HARD_CODED["condition_on_a_reply_returns_a_literal"]))
    assert condition["tags"] == ["reply_in_condition"]
    context = strategy(_program(FROM_ITEM["found_in_the_context"]))
    assert {"reads_context", "loops_over_options", "compares_item_data"} <= set(context["tags"])
    renamed = strategy("def solve(it, s):\n    r = s.ask('x')\n    return 'A' if r else 'B'\n")
    assert renamed == {"calls": {"ask": 1}, "tags": ["reply_in_condition"]}
    assert strategy("def solve(:") is None


def test_a_run_records_the_calls_made_and_the_leading_prompt_audit():
    assisted = _run('solver.judge("Is the answer C?")\n    return solver.choose()')
    assert assisted.audits["strategy"]["made"] == {"judge": 1, "choose": 1}
    assert assisted.audits["leading_prompt"] is True  # GENERATOR_ANSWER is C


@pytest.mark.slow
@needs_llama
@pytest.mark.parametrize(("body", "expected"), [
    ("solver.judge(item.question)\n    return 'ABCD'[len(item.letters) - 2]", "constant"),
    (FROM_ITEM["parse_the_question"], "computed_from_item"),
    (SOLVER_BASED["judge_each_option"], "solver_dependent"),
])
def test_cgr_exec_with_a_real_solver_classes_programs_it_has_never_seen(tmp_path, body,
                                                                        expected):
    """As a new user checks it: a real model answers the real run, the re-runs need none."""
    (tmp_path / "program.py").write_text(_program(body))
    (tmp_path / "item.json").write_text(json.dumps(ITEM.to_json()))
    done = subprocess.run([sys.executable, "-m", "cgr_plugin", "exec",
                           str(tmp_path / "program.py"), "--item", str(tmp_path / "item.json"),
                           "--solver", "smollm2-135m"], capture_output=True, text=True,
                          cwd=REPO, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    found = CGRRecord.from_json(done.stdout).assisted.provenance
    assert found["class"] == expected, found  # judge-each: constant by chance is (1/4)^6
