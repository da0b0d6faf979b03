import pytest

from cgr_plugin.programs.scaffold import audit_program, extract_program, read_constants

GOOD = '''GENERATOR_ANSWER = "B"
DIFFICULTY = "easy"

def solve(item, solver):
    return solver.choose()
'''
QUESTION = "Which planet is known as the Red Planet?"
CHOICES, LETTERS = ["Venus", "Mars"], ["A", "B"]


@pytest.mark.parametrize("text", [
    f"```python\n{GOOD}```",
    f"Here is the program:\n\n```python\n{GOOD}```\nIt asks the solver.",
    f"```\n{GOOD}```",
    GOOD,
    f"Sure! The program below works.\n{GOOD}\nThis program is short.",
    f"```python\n{GOOD}",  # cut off before the closing fence
])
def test_code_is_found_in_many_shapes(text):
    program = extract_program(text)
    assert program.status == "ok", program.message
    assert "def solve(item, solver):" in program.code


def test_helpers_and_solve_in_separate_blocks_are_joined():
    text = ("```python\ndef helper(x):\n    return x\n```\nthen\n```python\n"
            "def solve(item, solver):\n    return helper(solver.choose())\n```")
    program = extract_program(text)
    assert program.status == "ok" and "def helper" in program.code


@pytest.mark.parametrize("text, status", [
    ("", "no_code"),
    ("I think the answer is B because Mars is red.", "no_code"),
    ("```python\ndef solve(item, solver)\n    return 'B'\n```", "syntax_error"),
    ("```python\ndef answer(item, solver):\n    return 'B'\n```", "missing_entry"),
    ("```python\ndef solve(item):\n    return 'B'\n```", "missing_entry"),
])
def test_extraction_statuses(text, status):
    assert extract_program(text).status == status


def test_driver_code_is_removed_so_solve_runs_once():
    text = GOOD + "\nprint(solve(item, solver))\nif __name__ == '__main__':\n    solve(1, 2)\n"
    program = extract_program(text)
    assert program.status == "ok"
    assert "print(solve" not in program.code and "__main__" not in program.code
    assert "print(solve" in program.source  # the generator's text is kept as written


@pytest.mark.parametrize("constant, letter, status", [
    ('GENERATOR_ANSWER = "B"', "B", "ok"),
    ('GENERATOR_ANSWER = "(b)"', "B", "ok"),
    ('GENERATOR_ANSWER = "<letter>"', None, "placeholder"),
    ('GENERATOR_ANSWER = "?"', None, "placeholder"),
    ('GENERATOR_ANSWER = "Z"', None, "invalid"),
    ('GENERATOR_ANSWER = 2', None, "invalid"),
    ("", None, "missing"),
])
def test_generator_constant(constant, letter, status):
    program = extract_program(f"{constant}\ndef solve(item, solver):\n    return solver.choose()\n")
    assert read_constants(program.tree, LETTERS)[:2] == (letter, status)


def audit(code):
    return audit_program(extract_program(code), question=QUESTION, choices=CHOICES,
                         letters=LETTERS)


def test_answer_derived_from_the_solver_is_not_flagged():
    flags = audit(GOOD)
    assert not flags["hard_coded"] and not flags["retyped_item"]


@pytest.mark.parametrize("body, flag", [
    ("    solver.ask('x')\n    return 'B'", "returns_literal"),
    ("    solver.ask('x')\n    return 'Mars'", "returns_literal"),
    ("    solver.ask('x')\n    return GENERATOR_ANSWER", "returns_generator_answer"),
    ("    return item.letters[1]", "no_solver_call"),
])
def test_hard_coding_is_flagged(body, flag):
    flags = audit(f'GENERATOR_ANSWER = "B"\ndef solve(item, solver):\n{body}\n')
    assert flags[flag] and flags["hard_coded"]


def test_retyped_and_altered_item_text():
    retyped = audit('def solve(item, solver):\n'
                    '    return solver.choose("Which planet is known as the Red Planet?")\n')
    assert retyped["retyped_item"] and not retyped["altered_item"]
    altered = audit('def solve(item, solver):\n'
                    '    return solver.choose("Which planet is called the Red Planet?")\n')
    assert altered["retyped_item"] and altered["altered_item"]


def test_placeholders_and_interface():
    flags = audit('DIFFICULTY = "<easy|medium|hard>"\ndef solve(item, solver):\n'
                  '    return solver.choose()\n')
    assert flags["placeholders"] == ["<easy|medium|hard>"]
    assert audit("def solve(item):\n    return 'A'\n")["interface"] == "missing_entry"


def test_solver_passed_to_a_helper_is_still_a_solver_call():
    flags = audit("def score(s, text):\n    return s.judge(text)\n\n"
                  "def solve(item, solver):\n"
                  "    return solver.pick({k: score(solver, v)\n"
                  "                        for k, v in item.options.items()})\n")
    assert not flags["no_solver_call"] and not flags["hard_coded"]


def test_constant_returned_through_a_variable_is_flagged():
    flags = audit("def solve(item, solver):\n    answer = 'A'\n    solver.ask('hi')\n"
                  "    return answer\n")
    assert flags["returns_literal"] and flags["hard_coded"]
    derived = audit("def solve(item, solver):\n    answer = 'A'\n"
                    "    answer = solver.choose()\n    return answer\n")
    assert not derived["returns_literal"]


def test_altered_question_inside_a_longer_prompt():
    flags = audit('def solve(item, solver):\n    return solver.choose("Read carefully. '
                  'Which planet is called the Red Planet? Reply with a letter.")\n')
    assert flags["retyped_item"] and flags["altered_item"]


def test_the_solve_that_runs_is_the_one_audited():
    text = ("```python\ndef solve(item, solver):\n    return solver.choose()\n```\n"
            "Better:\n```python\ndef solve(item, solver):\n    return 'B'\n```")
    program = extract_program(text)
    assert program.status == "ok"
    assert audit_program(program, question=QUESTION, choices=CHOICES,
                         letters=LETTERS)["returns_literal"]


def test_annotated_generator_constant():
    program = extract_program('GENERATOR_ANSWER: str = "B"\n'
                              'def solve(item, solver):\n    return solver.choose()\n')
    assert read_constants(program.tree, LETTERS)[:2] == ("B", "ok")
