import re
from pathlib import Path

import pytest

from cgr_plugin.data.items import MCQAItem
from cgr_plugin.prompts import (
    GENERATOR_FAMILIES,
    TemplateError,
    generator_template,
    payload_shape,
    render,
    render_payload,
)

ITEM = MCQAItem(id="q", dataset="toy", question="Which is a mammal?",
                choices=("trout", "whale", "crow", "newt", "frog"), answer="B",
                context="Mammals breathe air.")


def test_direct_prompt_lists_every_choice_with_its_letter():
    text = render("direct.j2", item=ITEM, style="letter")
    for letter, choice in zip(ITEM.letters, ITEM.choices, strict=True):
        assert f"{letter}. {choice}" in text
    assert text.startswith("Answer with the letter of the correct option (A, B, C, D, E) only.")
    assert text.endswith("Mammals breathe air.\n\nQuestion: Which is a mammal?\nA. trout\n"
                         "B. whale\nC. crow\nD. newt\nE. frog")


def test_reasoning_style_asks_for_an_answer_line():
    assert 'Answer: X' in render("direct.j2", item=ITEM, style="reasoning")


def test_user_templates_override_packaged_ones(tmp_path, monkeypatch):
    (tmp_path / "direct.j2").write_text("Q: {{ item.question }} [{{ style }}]")
    monkeypatch.setenv("CGR_TEMPLATES_PATH", str(tmp_path))
    assert render("direct.j2", item=ITEM, style="letter") == "Q: Which is a mammal? [letter]"
    assert render("direct.j2", [tmp_path], item=ITEM, style="x").endswith("[x]")


def test_undefined_variables_fail_loudly(tmp_path):
    (tmp_path / "direct.j2").write_text("{{ item.question }} {{ shots }}")
    with pytest.raises(TemplateError, match="'shots' is undefined"):
        render("direct.j2", [tmp_path], item=ITEM, style="letter")


def test_missing_and_malformed_templates(tmp_path):
    with pytest.raises(TemplateError, match="'nope.j2' not found"):
        render("nope.j2", item=ITEM)
    (tmp_path / "bad.j2").write_text("{% for x in %}")
    with pytest.raises(TemplateError, match="bad.j2:1"):
        render("bad.j2", [tmp_path], item=ITEM)


def test_fewshot_examples_come_before_the_item_with_their_answers():
    shot = MCQAItem(id="s", dataset="toy", question="Which can fly?", choices=("crow", "newt"),
                    answer="A")
    item = MCQAItem(id="q", dataset="toy", question="Which is a mammal?",
                    choices=("trout", "whale"), answer="B", examples=(shot, shot))
    text = render("direct.j2", item=item, style="letter")
    assert text.startswith("Answer with the letter of the correct option (A, B) only.\n\n"
                           "Question: Which can fly?\nA. crow\nB. newt\nAnswer: A\n\n"
                           "Question: Which can fly?")
    assert text.endswith("Answer: A\n\nQuestion: Which is a mammal?\nA. trout\nB. whale")


@pytest.mark.parametrize("template", ["direct.j2", *(generator_template(family)
                                                      for family in GENERATOR_FAMILIES)])
def test_prompts_of_a_run_differ_only_in_their_item_at_the_end(template):
    """The fixed text comes first, so the embedded backend computes it once for every item.
    The new generator families end with a section about the item (its letters, its payload's
    shape) and then the item; per_option keeps 0.1's text, whose letters line is earlier."""
    other = MCQAItem(id="r", dataset="toy", question="Which is a bird?",
                     choices=("crow", "whale", "trout", "newt", "frog"), answer="A")
    items = (ITEM, other)
    prompts = [render(template, item=item, style="letter", budget=8) for item in items]
    tail = "item.j2" if template in ("direct.j2", "generator_per_option.j2") else \
        "_generator_item.j2"
    blocks = [render(tail, item=item, budget=8) for item in items]
    assert all(prompt.endswith(block) for prompt, block in zip(prompts, blocks, strict=True))
    assert prompts[0][:-len(blocks[0])] == prompts[1][:-len(blocks[1])]


def test_number_labels_are_asked_for_as_numbers():
    item = MCQAItem(id="q", dataset="toy", question="Q?", choices=("x", "y"), answer="2",
                    letters=("1", "2"))
    assert "1. x\n2. y" in render("direct.j2", item=item, style="letter")
    assert "the number of the correct option (1, 2) only" in render("direct.j2", item=item,
                                                                    style="letter")


SERIES_ITEM = MCQAItem(id="t", dataset="toy", question="Where is the spike?",
                       choices=("Beginning", "End"), answer="B",
                       payload={"series": {"ts1": [1.23456, -0.000123456, 12345.6, 2],
                                           "ts2": [0.5, 7.0]}})


def test_payload_is_shown_named_and_rounded_before_the_question():
    text = render("direct.j2", item=SERIES_ITEM, style="letter")
    assert text.startswith("Answer with the letter of the correct option (A, B) only.\n\n")
    assert text.endswith(  # the item comes last, its data before its question
        "Data (numbers rounded to 3 significant digits):\n"
        "series:\n"
        "  ts1 (4 values): 1.23, -0.000123, 12300, 2\n"
        "  ts2 (2 values): 0.5, 7\n\n"
        "Question: Where is the spike?\nA. Beginning\nB. End")


def test_exact_payloads_are_not_said_to_be_rounded():
    shown = render_payload({"n": 3, "label": "x", "series": [0.5, 2.25]})
    assert shown.text == "Data:\nn: 3\nlabel: x\nseries (2 values): 0.5, 2.25"
    assert shown.rounded == 0
    nested = render_payload({"table": [[1.23456, "a"]]}, digits=2)
    assert nested.text == 'Data (numbers rounded to 2 significant digits):\ntable: [[1.2, "a"]]'
    assert nested.rounded == 1
    assert render_payload([1, 2.5]).text == "Data:\nvalues (2 values): 1, 2.5"


@pytest.mark.parametrize("family", GENERATOR_FAMILIES)
def test_generator_prompt_states_the_payload_shape(family):
    text = render(generator_template(family), item=SERIES_ITEM, budget=8)
    shape = '{"series": {"ts1": [4 numbers], "ts2": [2 numbers]}} with the exact values'
    assert re.search(rf"(here|has data:) item.payload is {re.escape(shape)} "
                     r"\(the (item|question) below shows them rounded\)", text)
    assert "ts1 (4 values): 1.23" in text
    assert payload_shape({"a": "x", "b": [{"c": 1}], "d": None}) == \
        '{"a": a string, "b": [1 item], "d": None}'


def test_items_without_payload_show_no_data_block():
    assert "Data" not in render("direct.j2", item=ITEM, style="letter")
    for family in GENERATOR_FAMILIES:
        text = render(generator_template(family), item=ITEM, budget=8)
        assert "item.payload is" not in text and "Data" not in text


@pytest.mark.parametrize(("item", "pinned"), [
    (MCQAItem(id="q", dataset="toy", question="Which animal is a mammal?",
              choices=("trout", "whale", "crow", "newt"), answer="B",
              context="Mammals feed their young milk."), "per_option_prompt.txt"),
    (MCQAItem(id="t", dataset="toy", question="Where is the spike?", choices=("Beginning", "End"),
              answer="B", payload={"series": {"ts": [1.23456, 2.5]}}),
     "per_option_prompt_payload.txt"),
])
def test_per_option_is_the_prompt_of_0_1_to_the_byte(item, pinned):
    """tests/data/per_option_prompt*.txt were rendered by the generator.j2 of commit 7cc2389
    (before the families): old runs and packages stay comparable with
    generator_prompt=per_option."""
    expected = (Path(__file__).parent / "data" / pinned).read_text(encoding="utf-8")
    assert render(generator_template("per_option"), item=item, budget=8) + "\n" == expected
