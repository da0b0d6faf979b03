import pytest
from hypothesis import given
from hypothesis import strategies as st

from cgr_plugin.data.items import ItemError
from cgr_plugin.data.normalize import FieldMapping, Normalizer


def normalize(row, index=0, **mapping):
    return Normalizer("toy", FieldMapping.from_config(mapping))(row, index)


def test_defaults_read_the_item_shape():
    item = normalize({"id": 7, "question": "Q?", "choices": ["x", "y"], "answer": "B"})
    assert (item.id, item.answer, item.choices) == ("7", "B", ("x", "y"))


def test_missing_id_becomes_a_stable_positional_id():
    item = normalize({"question": "Q?", "choices": ["x", "y"], "answer": 0}, index=12)
    assert item.id == "toy/test/12"


def test_arc_style_labels_and_nested_paths():
    row = {"id": "a1", "question": "Q?", "answerKey": "3",
           "choices": {"text": ["p", "q", "r", "s"], "label": ["1", "2", "3", "4"]}}
    item = normalize(row, choices="choices.text", labels="choices.label", answer="answerKey")
    assert item.answer == "C"


def test_choices_from_separate_fields_with_index_gold():
    row = {"question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 3}
    item = normalize(row, choices=["opa", "opb", "opc", "opd"], answer="cop")
    assert item.answer == "D"
    assert normalize(row, choices=["opa", "opb", "opc", "opd"], answer="cop",
                     answer_format="index1").answer == "C"


def test_text_and_one_hot_gold():
    row = {"question": "Q?", "options": ["red", "blue"], "gold": "blue", "hot": [0, 1]}
    assert normalize(row, choices="options", answer="gold", answer_format="text").answer == "B"
    assert normalize(row, choices="options", answer="hot", answer_format="one_hot").answer == "B"


def test_metadata_context_and_payload_are_carried():
    row = {"question": "Next value?", "choices": ["up", "down"], "answer": "A",
           "series": [1, 2, 3], "passage": "Trend data.", "meta": {"subject": "ts"}}
    item = normalize(row, payload="series", context="passage", metadata=["meta.subject"])
    assert item.payload == [1, 2, 3]
    assert item.context == "Trend data."
    assert item.metadata == {"subject": "ts"}


@pytest.mark.parametrize("row, mapping, field, words", [
    ({"question": "Q?", "choices": ["a", "b"]}, {}, "answer", "missing required"),
    ({"question": "Q?", "choices": ["a", "b"], "answer": 5}, {}, "answer", "does not name"),
    ({"question": "Q?", "choices": ["a", "b"], "answer": "maybe"}, {}, "answer",
     "set fields.answer_format"),
    ({"question": "Q?", "choices": "ab", "answer": 0}, {}, "choices", "list of strings"),
    ({"question": "Q?", "choices": ["a", "b"], "answer": 0}, {"context": "passage"}, "passage",
     "missing from row"),
    ({"question": "Q?", "choices": ["a", "a"], "answer": "a"}, {"answer_format": "text"},
     "answer", "matches 2 choices"),
])
def test_bad_rows_name_item_and_field(row, mapping, field, words):
    with pytest.raises(ItemError) as info:
        normalize(row, index=4, **mapping)
    assert info.value.field == field
    assert info.value.item == "toy/test/4"
    assert words in str(info.value)


def test_unknown_mapping_key_is_rejected():
    with pytest.raises(ItemError, match="fields.questoin"):
        FieldMapping.from_config({"questoin": "q"}, source="task.yaml")


@given(st.lists(st.text(min_size=1).filter(str.strip), min_size=2, max_size=8, unique=True),
       st.integers(min_value=0, max_value=7), st.integers())
def test_shuffle_is_deterministic_and_keeps_the_gold_text(choices, gold, seed):
    gold %= len(choices)
    row = {"id": "x", "question": "Q?", "choices": choices, "answer": gold}
    first = normalize(row, shuffle_seed=seed)
    again = normalize(row, shuffle_seed=seed)
    assert first == again
    assert first.choices[first.answer_index] == choices[gold]
    assert sorted(first.choices) == sorted(choices)


def test_preprocess_errors_are_data_errors():
    def broken(row):
        raise RuntimeError("boom")
    with pytest.raises(ItemError, match="preprocess function failed: RuntimeError: boom"):
        Normalizer("toy", preprocess=broken)({"question": "q"}, 0)


@pytest.mark.parametrize("mapping, field", [
    ({"choices": 5}, "fields.choices"),
    ({"question": ["q"]}, "fields.question"),
    ({"metadata": 5}, "fields.metadata"),
    ({"metadata": ["a.n", "b.n"]}, "fields.metadata"),
])
def test_mapping_values_are_checked(mapping, field):
    with pytest.raises(ItemError) as info:
        FieldMapping.from_config(mapping, source="task.yaml")
    assert info.value.field == field and info.value.source == "task.yaml"
    with pytest.raises(ItemError, match="must be a mapping"):
        FieldMapping.from_config(["question"], source="task.yaml")


@pytest.mark.parametrize("marks", [["x", 1], [None, 1], "10", [1, 1]])
def test_bad_one_hot_gold_names_the_field(marks):
    row = {"question": "Q?", "choices": ["a", "b"], "hot": marks}
    with pytest.raises(ItemError) as info:
        normalize(row, answer="hot", answer_format="one_hot")
    assert info.value.field == "hot"


def test_numeric_text_gold_matches_numeric_choices():
    row = {"question": "2 * 6?", "choices": [10, 12, 14], "gold": 12}
    assert normalize(row, answer="gold", answer_format="text").answer == "B"


def test_a_row_reports_every_problem_it_has():
    row = {"uid": "q9", "choices": ["a", "", 3.5, None], "answer": 9, "extra": 1}
    mapping = FieldMapping.from_config({"id": "uid", "context": "passage"})
    item, problems = Normalizer("toy", mapping).check(row, 0)
    assert item is None
    found = {(p.item, p.field, p.reason.split(",")[0]) for p in problems}
    assert ("q9", "question", "missing required field for question") in found
    assert ("q9", "choices", "choice 3 must be a string") in found
    assert ("q9", "passage", "field mapped to context missing from row") in found


def test_item_checks_are_named_by_the_row_field():
    row = {"stem": "Q?", "opts": ["only"], "key": 0}
    _, problems = Normalizer("toy", FieldMapping.from_config(
        {"question": "stem", "choices": "opts", "answer": "key"})).check(row, 0)
    assert [(p.field, p.reason) for p in problems] == [
        ("opts", "needs at least two choices, got 1")]


def test_mapping_reports_every_problem_and_suggests_names():
    mapping, problems = FieldMapping.parse(
        {"quesiton": "q", "answer_format": "leter", "shuffle_seed": "x"}, source="t.yaml")
    assert mapping is None
    messages = [str(p) for p in problems]
    assert messages[0] == ("t.yaml: field 'fields.quesiton': unknown key; did you mean "
                           "'question'? (allowed: answer, answer_format, choices, context, id, "
                           "labels, metadata, payload, question, shuffle_seed)")
    assert "did you mean 'letter'?" in messages[1] and "shuffle_seed" in messages[2]
    mapping, problems = FieldMapping.parse({"quesiton": "q"})
    assert mapping == FieldMapping() and len(problems) == 1  # unknown keys alone: still usable


@pytest.mark.parametrize("gold, fmt, expected", [
    ("3", "auto", "3"), (3, "index1", "3"), (2, "index", "3"), ("3", "letter", "3"),
])
def test_numbers_scheme_reads_golds(gold, fmt, expected):
    row = {"question": "Q?", "choices": ["a", "b", "c"], "answer": gold}
    normalizer = Normalizer("toy", FieldMapping.from_config({"answer_format": fmt}),
                            letters=tuple(str(i) for i in range(1, 10)))
    item = normalizer(row, 0)
    assert (item.answer, item.letters) == (expected, ("1", "2", "3"))


def test_numbers_scheme_refuses_to_guess_an_integer_gold():
    row = {"question": "Q?", "choices": ["a", "b", "c"], "answer": 2}
    with pytest.raises(ItemError, match="set fields.answer_format to index"):
        Normalizer("toy", letters=("1", "2", "3", "4"))(row, 0)
    with pytest.raises(ItemError, match="but the letter scheme has only 2 labels"):
        Normalizer("toy", letters=("X", "Y"))({**row, "answer": "X"}, 0)
