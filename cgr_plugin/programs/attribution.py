"""Whether a program hands the solver the generator's own answer: the ``leading_prompt`` audit.

A gain of the assisted channel over direct can be the generator's knowledge rather than the
solver's: a program that asks "The answer is C, isn't it?" or only ever asks about option C
(the generator's GENERATOR_ANSWER) makes the solver confirm the generator. The audit reads the
solver prompts of the program's trace: it is set when one of them *states* the generator's
option as the answer ("the answer is C", "is the answer C?", "answer: Mars"), or when the
prompts together *single it out* (they mention the generator's option, by its text or as
"option C" / "(C)", and no other option at all). Option texts that the question itself
contains, that are shorter than 2 characters, or that contain another option's text cannot
single anything out and are not used.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["leading_prompt"]

_ANSWER = (r"(?i:(?:correct\s+|right\s+|final\s+)?(?:(?:answer|option|choice)\s*"
           r"(?:is|:|=|would be|should be)|answer)\s*)")


def _states(prompt: str, letter: str, text: str) -> bool:
    by_letter = re.search(_ANSWER + r"[(\"'*]?(?i:option\s+)?" + re.escape(letter) + r"\b",
                          prompt)
    by_text = re.search(_ANSWER + r"[\"'*]?" + re.escape(text) + r"(?!\w)", prompt,
                        re.I) if len(text.strip()) >= 2 else None
    return bool(by_letter or by_text)


def _mentions(prompt: str, letter: str, text: str | None) -> bool:
    if re.search(r"(?i:option|choice)\s+" + re.escape(letter) + r"\b|\(" + re.escape(letter)
                 + r"\)", prompt):
        return True
    return text is not None and re.search(r"(?<!\w)" + re.escape(text) + r"(?!\w)", prompt,
                                          re.I) is not None


def leading_prompt(prompts: Sequence[str], letter: str | None, letters: Sequence[str],
                   choices: Sequence[str], question: str) -> bool | None:
    """True when the solver prompts state or single out option ``letter`` (the generator's own
    answer); None when the generator gave no letter of the item (nothing to lead to)."""
    if letter is None or letter not in letters:
        return None
    texts = [str(c).strip() for c in choices]
    own = texts[list(letters).index(letter)]
    if any(_states(p, letter, own) for p in prompts):
        return True
    usable = [t if len(t) >= 2 and t.lower() not in question.lower()
              and not any(o != t and o.lower() in t.lower() for o in texts) else None
              for t in texts]
    mentioned = {x for x, t in zip(letters, usable, strict=True)
                 if any(_mentions(p, x, t) for p in prompts)}
    return mentioned == {letter}
