import pytest

from cgr_plugin.data.items import ItemError, MCQAItem, check_unique_ids


def make(**overrides):
    fields = dict(id="q1", dataset="toy", question="What is 2 + 2?", choices=("3", "4", "5"),
                  answer="B")
    fields.update(overrides)
    return MCQAItem(**fields)


def test_item_letters_and_gold_index():
    item = make()
    assert item.letters == ("A", "B", "C")
    assert item.answer_index == 1


def test_doc_round_trip_keeps_structure():
    item = make(context="A passage.", payload={"series": [1.5, 2.0, 3.25]},
                metadata={"subject": "math"})
    doc = item.to_doc()
    assert isinstance(doc["payload_json"], str)  # Arrow-friendly flat columns
    assert MCQAItem.from_doc(doc) == item
    assert MCQAItem.from_json(item.to_json()) == item


@pytest.mark.parametrize("overrides, field, words", [
    ({"answer": "D"}, "answer", "not one of the choice letters"),
    ({"answer": "b"}, "answer", "not one of the choice letters"),
    ({"choices": ("only",)}, "choices", "at least two"),
    ({"choices": ("a", "")}, "choices", "non-empty"),
    ({"choices": ("a", 3)}, "choices", "non-empty string"),
    ({"question": ""}, "question", "non-empty"),
    ({"id": ""}, "id", "non-empty"),
    ({"context": 5}, "context", "string or null"),
    ({"payload": object()}, "payload", "JSON-serializable"),
])
def test_invalid_items_name_the_field(overrides, field, words):
    with pytest.raises(ItemError) as info:
        make(**overrides)
    assert info.value.field == field
    assert words in str(info.value)


def test_from_json_rejects_missing_and_unknown_fields():
    with pytest.raises(ItemError, match="'answer'.*missing required field"):
        MCQAItem.from_json({"id": "x", "dataset": "d", "question": "q", "choices": ["a", "b"]})
    with pytest.raises(ItemError, match="'colour'.*unknown field"):
        MCQAItem.from_json({"id": "x", "dataset": "d", "question": "q", "choices": ["a", "b"],
                            "answer": "A", "colour": "red"})
    with pytest.raises(ItemError, match="'choices'.*must be a list"):
        MCQAItem.from_json({"id": "x", "dataset": "d", "question": "q", "choices": "ab",
                            "answer": "A"})


def test_duplicate_ids_are_reported_with_source():
    with pytest.raises(ItemError) as info:
        check_unique_ids([make(), make()], source="data.jsonl")
    assert str(info.value) == "data.jsonl: item q1: field 'id': duplicate id"


def test_letter_schemes_and_examples_round_trip():
    shot = make(id="s1", answer="3", letters=("1", "2", "3"))
    item = make(letters=("1", "2", "3"), answer="2", examples=(shot,))
    assert item.answer_index == 1 and not item.default_letters
    assert item.to_json()["letters"] == ["1", "2", "3"]
    assert item.to_json()["examples"][0]["id"] == "s1"
    assert MCQAItem.from_json(item.to_json()) == item
    assert MCQAItem.from_doc(item.to_doc()) == item
    assert "letters" not in make().to_json() and "examples_json" not in make().to_doc()


@pytest.mark.parametrize("letters, words", [
    (("1", "2"), "2 letters for 3 choices"),
    (("a", "b", "c"), "upper-casing leaves unchanged"),
    (("X", "X", "Y"), "repeat a label"),
])
def test_bad_letter_schemes_are_rejected(letters, words):
    with pytest.raises(ItemError, match=words) as info:
        make(letters=letters, answer=letters[0])
    assert info.value.field == "letters"
