"""Random malformed input never crashes answer extraction, row normalization or the YAML
loader, and never yields a letter the input did not give.

Example counts are fixed and the runs derandomized, so the figures in docs/reliability.md are
what this file tries on every run (``FUZZ_CASES`` below).
"""

from __future__ import annotations

import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cgr_plugin.data.items import ItemError
from cgr_plugin.data.normalize import FieldMapping, Normalizer
from cgr_plugin.extraction import extract_letter
from cgr_plugin.tasks.validate import validate_task_yaml

FUZZ_CASES = {"extraction": 600, "rows": 400, "mappings": 200, "task_yaml": 150}
FUZZ = {"derandomize": True, "deadline": None, "database": None,
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]}

LETTER_SCHEMES = st.sampled_from([tuple("ABCD"), tuple("ABCDE"), ("1", "2", "3"),
                                  ("W", "X", "Y", "Z")])
REPLY = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(["Answer:", "answer is", "(", ")", "B", "C", "A.", "2", "or", "not",
                              "option", "\n", " ", "**", "final", "C or D", "1", "x"]),
             max_size=30).map("".join))


@settings(max_examples=FUZZ_CASES["extraction"], **FUZZ)
@given(REPLY, LETTER_SCHEMES, st.lists(st.text(max_size=20), min_size=5, max_size=5))
def test_extraction_never_crashes_and_never_invents_a_letter(text, letters, texts):
    choices = texts[:len(letters)]
    found = extract_letter(text, letters, choices)
    assert found.letter is None or found.letter in letters
    if found.letter is not None:  # the reply named it: as a label, or by the option's words
        option = re.sub(r"[\W_]+", " ", choices[letters.index(found.letter)]).strip().lower()
        said = re.sub(r"[\W_]+", " ", text).lower()
        assert found.letter in text or (option and option[:3] in said), (text, found)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=6),
    max_leaves=20)
ROW_KEYS = st.sampled_from(["id", "question", "choices", "answer", "label", "text", "context",
                            "metadata", "answerKey", "options", "A", "B", "gold", "x"])


@settings(max_examples=FUZZ_CASES["rows"], **FUZZ)
@given(st.dictionaries(ROW_KEYS, JSONISH, max_size=8), st.integers(0, 10**6),
       st.sampled_from([None, tuple("ABCD"), ("1", "2", "3", "4")]))
def test_row_normalization_never_crashes_and_keeps_the_gold_among_the_options(row, index,
                                                                             letters):
    item, problems = Normalizer(dataset="fuzz", letters=letters).check(row, index)
    assert (item is None) == bool(problems)
    assert all(isinstance(p, ItemError) and str(p) for p in problems)
    if item is not None:
        assert item.answer in item.letters and len(item.choices) == len(item.letters) >= 2


@settings(max_examples=FUZZ_CASES["mappings"], **FUZZ)
@given(JSONISH)
def test_field_mappings_from_yaml_never_crash(value):
    mapping, problems = FieldMapping.parse(value, source="fuzz.yaml")
    assert mapping is not None or problems
    assert all(isinstance(p, ItemError) for p in problems)


YAML_LINES = st.sampled_from([
    "task: fuzz", "task: [a, b]", "class: !function cgr_plugin.tasks.task.CGRTask",
    "class: !function no.such.Thing", "dataset_kwargs:", "  data_files: data.jsonl",
    "  data_files: {test: data.jsonl, train: missing.csv}", "  fields: {question: q}",
    "  fields: 7", "  letters: numbers", "  letters: [A, A]", "  bundle: arc_easy",
    "  bundle: nope", "test_split: test", "fewshot_split: train", "num_fewshot: 2",
    "dataset_path: some/hub_id", "include: _missing.yaml", "  - x", ": :", "key: value: x",
    "\t- tab", "{", "'unterminated", "task: fuzz\ntask: again", "metadata: {version: 1}",
    "dataset_kwargs: {data_files: data.jsonl, preprocess: !function fix.row}", "---", ""])
DATA = st.sampled_from([
    "", "{}\n", '{"id": "1", "question": "Q?", "choices": ["a", "b"], "answer": "A"}\n',
    '{"id": "1", "question": "Q?", "choices": ["a"], "answer": "Z"}\nnot json\n',
    '[1, 2]\n', '{"id": 1, "question": null, "choices": "ab", "answer": 3}\n', "\x00\xff"])


@settings(max_examples=FUZZ_CASES["task_yaml"], **FUZZ)
@given(st.lists(YAML_LINES, max_size=10), DATA)
def test_task_yaml_validation_never_crashes(tmp_path_factory, lines, data):
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "data.jsonl").write_text(data, encoding="utf-8", errors="surrogateescape")
    path = folder / "fuzz.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = validate_task_yaml(path)
    text = json.dumps([str(p) for p in report.problems.errors], default=str)
    assert isinstance(text, str)


def test_the_documented_fuzz_figures_are_these():
    from .conftest import REPO

    doc = (REPO / "docs" / "reliability.md").read_text(encoding="utf-8")
    total = sum(FUZZ_CASES.values())
    assert f"malformed inputs tried: **{total}**" in doc, total
