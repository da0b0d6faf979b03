"""Program shapes: what makes two programs the same strategy, and whether a program copies its
prompt. These decide the copy rate and diversity figures of every run."""

from __future__ import annotations

import ast

import pytest

from cgr_plugin.data.items import MCQAItem
from cgr_plugin.programs.library import fixed_programs
from cgr_plugin.programs.shapes import copies_prompt, prompt_examples, shape, shape_id
from cgr_plugin.prompts import GENERATOR_FAMILIES, generator_template, render

ITEM = MCQAItem(id="q", dataset="toy", question="Which animal is a mammal?",
                choices=("trout", "whale", "crow", "newt"), answer="B")
PER_OPTION = render(generator_template("per_option"), item=ITEM, budget=8)

# The per_option sketch as 9 of 20 generated programs had it: question retyped, names changed.
RETYPED = '''GENERATOR_ANSWER = "B"
DIFFICULTY = "easy"

def solve(item, solver):
    """Judge each option."""
    ctx = (item.context + "\\n") if item.context else ""
    result = {}
    for key, option in item.options.items():
        statement = f"{ctx}Question: Which animal is a mammal?\\nProposed answer: {option}\\nOk?"
        result[key] = solver.judge(statement)
    return solver.pick(result)
'''
COMPUTE = '''def solve(item, solver):
    total = 3 * 8 + 2 * 6
    for letter, text in item.options.items():
        if text.strip() == str(total):
            return letter
    return None
'''


def test_renamed_and_reworded_copies_of_the_sketch_have_its_shape():
    assert copies_prompt(RETYPED, PER_OPTION)
    assert shape_id(RETYPED) == shape_id(fixed_programs()["judge_each_option"])


def test_a_different_strategy_has_a_different_shape_and_copies_nothing():
    assert shape(COMPUTE) != shape(RETYPED)
    assert not copies_prompt(COMPUTE, PER_OPTION)
    # the same computation with other numbers is the same shape: literals are not strategy
    assert shape_id(COMPUTE) == shape_id(COMPUTE.replace("3 * 8 + 2 * 6", "5 * 4 + 1 * 9"))
    # ... but another operator or another control flow is not
    assert shape_id(COMPUTE) != shape_id(COMPUTE.replace("3 * 8 + 2 * 6", "3 * 8 - 2 * 6"))
    assert shape_id(COMPUTE) != shape_id(COMPUTE.replace("return None", "return solver.choose()"))


@pytest.mark.parametrize("family", [f for f in GENERATOR_FAMILIES if f != "per_option"])
def test_the_new_families_show_no_body_to_paste(family):
    """Their one code block is the contract's shape with its evidence and decision elided
    (``...``); the per_option sketch is not shown, so neither it nor a computation copies."""
    prompt = render(generator_template(family), item=ITEM, budget=8)
    shown = prompt_examples(prompt)
    assert len(shown) == 1
    assert any(isinstance(node, ast.Constant) and node.value is Ellipsis
               for node in ast.walk(ast.parse(shown[0])))
    assert not copies_prompt(RETYPED, prompt) and not copies_prompt(COMPUTE, prompt)


def test_what_does_not_parse_has_no_shape():
    assert shape("def solve(item, solver)\n    return 'A'") is None
    assert shape(None) is None and not copies_prompt(None, PER_OPTION)
