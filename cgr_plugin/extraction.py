"""Read a choice letter out of model text, or report that there is none. Never guess.

Rules, in order (each only accepts letters of this item's choices):

1. an explicit final answer ("Answer: C", "the answer is (C)", "**Answer:** C"): the last one wins;
2. a reply whose first line is a letter ("C", "(C)", "C.", "C)"), or a letter followed by that
   option's own text ("C) 51");
3. a reply that is exactly one option's text (case and surrounding punctuation ignored).

Anything else is ``None``: a leading "A" that is an article, a list of letters, a hedge.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Extraction", "extract_letter"]

_EXPLICIT = re.compile(
    r"(?i:\banswer\b)\s*(?:(?i:is|would be|should be)\s*)?[:\-=]?\s*\**\s*"
    r"[\(\[]?\s*(?P<letter>[A-Z])\s*[\)\]]?(?![A-Za-z0-9])"
)
_LEADING = re.compile(r"\A[\(\[]?(?P<letter>[A-Z])[\)\]]?(?P<sep>[.:]?)(?P<body>.*)\Z", re.S)
_PUNCT = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class Extraction:
    letter: str | None
    rule: str  # "explicit", "letter", "choice_text" or "none"


def _norm(text: str) -> str:
    return _PUNCT.sub(" ", text).strip().lower()


def extract_letter(text: str | None, letters: Sequence[str],
                   choices: Sequence[str] | None = None) -> Extraction:
    if not text or not text.strip():
        return Extraction(None, "none")
    valid = set(letters)
    explicit = [m.group("letter") for m in _EXPLICIT.finditer(text)]
    explicit = [x for x in explicit if x in valid]
    if explicit:
        return Extraction(explicit[-1], "explicit")

    reply = text.strip()
    first_line = reply.splitlines()[0].strip()
    match = _LEADING.match(first_line)
    if match and match.group("letter") in valid:
        letter, body = match.group("letter"), match.group("body")
        if not body.strip(" *"):  # the first line is the letter alone
            return Extraction(letter, "letter")
        separated = body[:1].isspace() or match.group("sep") or first_line[1:2] in ")]"
        if separated and choices is not None:  # "B) 51", "C. wind speed": must be that option
            said, option = _norm(body), _norm(choices[letters.index(letter)])
            if option and (said == option or said.startswith(option + " ")):
                return Extraction(letter, "letter")

    if choices is not None:
        reply_norm = _norm(reply)
        hits = [i for i, c in enumerate(choices) if _norm(c) and _norm(c) == reply_norm]
        if len(hits) == 1:
            return Extraction(letters[hits[0]], "choice_text")
    return Extraction(None, "none")
