import pytest

from cgr_plugin.extraction import extract_letter

LETTERS = ("A", "B", "C", "D")
CHOICES = ("41", "51", "61", "71")


@pytest.mark.parametrize("text, letter", [
    ("C", "C"), ("(B)", "B"), ("B.", "B"), ("D)", "D"), ("  A\n\nbecause it is first", "A"),
    ("B) 51", "B"), ("D. 71 is the product", "D"),
    ("Answer: D", "D"), ("The answer is (C).", "C"), ("**Answer:** B", "B"),
    ("17*3 = 51. Answer: A\nWait, let me check. Answer: B", "B"),  # the last explicit answer wins
    ("51", "B"),  # exactly one option's text
])
def test_reads_clear_answers(text, letter):
    assert extract_letter(text, LETTERS, CHOICES).letter == letter


@pytest.mark.parametrize("text", [
    "", "   ", None,
    "A frog eats flies",          # article, not a letter
    "B) 61",                       # letter and text disagree
    "I think A or B",              # hedge
    "To determine the answer we", # cut off before answering
    "Answer: E",                   # not one of this item's letters
    "answer: a",                   # lowercase letter is a word, not an option
    "17*3 = 41",
])
def test_never_guesses(text):
    assert extract_letter(text, LETTERS, CHOICES).letter is None


def test_labelled_letter_with_explanation_or_cut_off_option_text():
    choices = ("Sunlight is the source of energy.", "Most ecosystems are found on land.",
               "soil", "Carbon dioxide")
    assert extract_letter("B. Most ecosystems are found", LETTERS, choices).letter == "B"
    assert extract_letter("D) because plants need it", LETTERS, choices).letter == "D"
    assert extract_letter("A. soil", LETTERS, choices).letter is None  # letter and text disagree
    assert extract_letter("B. C.\n\nThe correct", LETTERS, choices).letter is None  # two labels
    assert extract_letter("C soil", LETTERS, choices).letter == "C"
    assert extract_letter("C soils are rich", LETTERS, choices).letter is None


@pytest.mark.parametrize("text, letter", [
    ("Answer: B or C", None),
    ("The answer is A or B", None),
    ("Answer: A, B and C are all plausible", None),
    ("The answer is B, since answer A is incorrect.", "B"),
    ("Answer: C is wrong, it is D", None),
    ("Answer: B) 61", None),
    ("Answer: B) 51", "B"),
    ("I first thought the answer is A.\nAnswer: C", "C"),
    ("It could be answer A, or maybe the answer is C.", None),
])
def test_explicit_answers_that_hedge_or_contradict(text, letter):
    assert extract_letter(text, LETTERS, CHOICES).letter == letter


def test_rule_is_reported():
    assert extract_letter("Answer: C", LETTERS, CHOICES).rule == "explicit"
    assert extract_letter("C", LETTERS, CHOICES).rule == "letter"
    assert extract_letter("61", LETTERS, CHOICES).rule == "choice_text"
    assert extract_letter("hmm", LETTERS, CHOICES).rule == "none"


def test_more_than_four_letters():
    letters = tuple("ABCDEFGH")
    assert extract_letter("Answer: G", letters).letter == "G"


@pytest.mark.parametrize("text, expected", [
    ("Answer: 2", "2"), ("2", "2"), ("(3)", "3"), ("4. 7", "4"), ("1) 10", "1"),
    ("12", "2"),            # the text of option 2, not label 1
    ("1.5", "3"),           # the text of option 3, not label 1
    ("Answer: 12", None), ("Answer: 1 or 2", None), ("5", None),
])
def test_number_labels(text, expected):
    assert extract_letter(text, ("1", "2", "3", "4"), ("10", "12", "1.5", "7")).letter == expected


def test_custom_labels():
    labels, options = ("I", "II", "III", "IV"), ("a", "b", "c", "d")
    assert extract_letter("Answer: IV", labels, options).letter == "IV"
    assert extract_letter("III. c", labels, options).letter == "III"
    assert extract_letter("Answer: V", labels, options).letter is None
