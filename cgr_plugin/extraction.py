"""Read a choice letter out of model text, or report that there is none. Never guess.

Rules, in order (each only accepts letters of this item's choices):

1. an explicit answer ("Answer: C", "the answer is (C)", "**Answer:** C"); hedges ("Answer: B or
   C"), negations ("answer A is wrong") and a letter whose option text disagrees ("Answer: B) 61"
   when 61 is option C) are not answers; the last line with an answer decides, and two
   different letters on that line are no answer;
2. a reply whose first line starts with a labelled letter ("C", "(C)", "C.", "C) 51", "C. wind")
   unless the text after it repeats a *different* option; a bare "C wind" only when it repeats
   option C's own text;
3. a reply that is exactly one option's text (case and surrounding punctuation ignored).

Anything else is ``None``: a leading "A" that is an article, a list of letters, a hedge.

Items with another letter scheme (``1, 2, 3``, or labels of the dataset's own) follow the same
rules with their labels in place of A-Z.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Extraction", "extract_letter"]

_NEGATED = re.compile(r"\s*[\)\]]?\s*(?:is|was|are|seems)\s+(?:wrong|incorrect|not|false)\b",
                      re.I)
_PUNCT = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class _Patterns:
    explicit: re.Pattern[str]
    leading: re.Pattern[str]
    hedge: re.Pattern[str]
    other_label: re.Pattern[str]


def _compile(token: str, custom: bool, digits: bool) -> _Patterns:
    """The rules' patterns for one kind of label: ``[A-Z]`` for letters, or the item's own
    labels (``1``, ``2``, ...; ``IV``) as alternatives. A digit label never continues into a
    number ("12" is not label 1, "1.5" is not label 1 followed by "5")."""
    after = r"(?![0-9])" if digits else ""
    word = "A-Za-z0-9" if custom else "A-Za-z"  # what may not touch a label
    return _Patterns(
        explicit=re.compile(
            r"(?i:\banswer\b)\s*(?:(?i:is|would be|should be)\s*)?[:\-=]?\s*\**\s*"
            rf"[\(\[]?\s*(?P<letter>{token})\s*[\)\]]?(?![A-Za-z0-9])"),
        leading=re.compile(
            rf"\A[\(\[]?(?P<letter>{token}){after}[\)\]]?(?P<sep>[.:]?){after}(?P<body>.*)\Z",
            re.S),
        hedge=re.compile(r"\s*[\)\]]?\s*(?:,|/|&|\bor\b|\band\b)\s*[\(\[]?"
                         rf"({token})(?![{word}])"),
        other_label=re.compile(rf"(?<![{word}])({token})(?:[.)\]]|$)"),
    )


_LETTER_PATTERNS = _compile("[A-Z]", custom=False, digits=False)


@lru_cache(maxsize=64)
def _patterns(letters: tuple[str, ...]) -> _Patterns:
    if all(len(x) == 1 and "A" <= x <= "Z" for x in letters):
        return _LETTER_PATTERNS
    token = "|".join(re.escape(x) for x in sorted(letters, key=len, reverse=True))
    return _compile(f"(?:{token})", custom=True, digits=any(x[-1:].isdigit() for x in letters))


@dataclass(frozen=True)
class Extraction:
    letter: str | None
    rule: str  # "explicit", "letter", "choice_text" or "none"


def _norm(text: str) -> str:
    return _PUNCT.sub(" ", text).strip().lower()


def _options_named(said: str, letters: Sequence[str], choices: Sequence[str]) -> set[str]:
    """Letters whose option text the reply repeats (whole, or cut off by the token budget)."""
    said = _norm(said)
    named = set()
    for letter, choice in zip(letters, choices, strict=False):
        option = _norm(choice)
        if said and option and (said == option or said.startswith(option + " ")
                                or (len(said) >= 3 and option.startswith(said))):
            named.add(letter)
    return named


def extract_letter(text: str | None, letters: Sequence[str],
                   choices: Sequence[str] | None = None) -> Extraction:
    if not text or not text.strip():
        return Extraction(None, "none")
    valid = set(letters)
    rules = _patterns(tuple(letters))
    explicit: list[tuple[str, int]] = []  # (letter, line number)
    for match in rules.explicit.finditer(text):
        letter = match.group("letter")
        if letter not in valid:
            continue
        rest = text[match.end():].split("\n", 1)[0]
        if _NEGATED.match(rest):
            continue  # "answer A is wrong"
        other = rules.hedge.match(rest)
        if other and other.group(1) in valid:
            return Extraction(None, "none")  # "Answer: B or C"
        if choices is not None:
            named = _options_named(rest.lstrip(" ).]:"), letters, choices)
            if named and letter not in named:
                return Extraction(None, "none")  # "Answer: B) 61" where 61 is option C
        explicit.append((letter, text.count("\n", 0, match.start())))
    if explicit:
        final, final_line = explicit[-1]
        if any(x != final and line == final_line for x, line in explicit):
            return Extraction(None, "none")  # different answers on the line that decides
        return Extraction(final, "explicit")  # a later line corrects an earlier one

    reply = text.strip()
    first_line = reply.splitlines()[0].strip()
    match = rules.leading.match(first_line)
    if match and match.group("letter") in valid:
        letter, body = match.group("letter"), match.group("body")
        if not body.strip(" *"):  # the first line is the letter alone
            return Extraction(letter, "letter")
        labelled = bool(match.group("sep")) or first_line[1:2] in ")]" or first_line[:1] in "(["
        named = _options_named(body, letters, choices) if choices is not None else set()
        others = {m.group(1) for m in rules.other_label.finditer(body)} & valid - {letter}
        if labelled and not others and (not named or letter in named):
            return Extraction(letter, "letter")  # "B. wind speed", "B) 51", "(C) because ..."
        if body[:1].isspace() and letter in named:
            return Extraction(letter, "letter")  # "B wind speed": only if that is option B

    if choices is not None:
        reply_norm = _norm(reply)
        hits = [i for i, c in enumerate(choices) if _norm(c) and _norm(c) == reply_norm]
        if len(hits) == 1:
            return Extraction(letters[hits[0]], "choice_text")
    return Extraction(None, "none")
