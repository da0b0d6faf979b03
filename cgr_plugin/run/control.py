"""The budget-matched control: the direct solver, given as many calls as the program used.

For each item the direct prompt is sampled k times (k = the program's solver calls, at least 1;
temperature 0.7, seeded per item and draw for llama.cpp; lm-eval backends seed as they do; k = 1
is the greedy direct question), letters are read with the direct channel's
extraction, and the majority letter wins; ties go to a seeded shuffle, never to position. This
separates what the scaffold adds from what k solver calls alone buy.
"""

from __future__ import annotations

import random
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence

from .. import plugins
from ..data.items import MCQAItem
from ..models.backends import Backend, GenerationRequest, seconds_each
from ..record import ChannelResult

__all__ = ["run_budget_matched"]

TEMPERATURE = 0.7


def run_budget_matched(items: Sequence[MCQAItem], calls: Sequence[int], *, solver: Backend,
                       prompt: Callable[[MCQAItem], str], max_tokens: int, seed: int = 0,
                       extractor: str = "cgr",
                       progress: bool = False) -> list[ChannelResult]:
    requests, owners = [], []
    texts = [prompt(item) for item in items]
    for index, (item, text, k) in enumerate(zip(items, texts, calls, strict=True)):
        for draw in range(max(1, k)):
            requests.append(GenerationRequest(  # one call is the direct question: greedy
                text, max_tokens, temperature=TEMPERATURE if k > 1 else 0.0,
                seed=zlib.crc32(f"{seed}:{item.id}:{draw}".encode())))
            owners.append(index)
    extract = plugins.extractor(extractor)
    started = time.perf_counter()
    generations = solver.generate(requests, progress=progress)
    took = seconds_each(generations, time.perf_counter() - started)
    votes: list[list[str]] = [[] for _ in items]
    raws: list[list[str]] = [[] for _ in items]
    errors: list[list[str]] = [[] for _ in items]
    too_long = [False] * len(items)
    tokens = [[0, 0] for _ in items]
    seconds = [0.0] * len(items)
    for owner, gen, took_one in zip(owners, generations, took, strict=True):
        item = items[owner]
        seconds[owner] += took_one
        if gen.error is not None:
            errors[owner].append(gen.error)
            too_long[owner] = too_long[owner] or gen.too_long
            continue
        raws[owner].append(gen.text)
        tokens[owner][0] += gen.tokens_in or 0
        tokens[owner][1] += gen.tokens_out or 0
        letter = extract(gen.text, item.letters, item.choices).letter
        if letter:
            votes[owner].append(letter)
    results = []
    for index, item in enumerate(items):
        k = owners.count(index)
        counts = Counter(votes[index])
        answer = None
        if counts:
            best = max(counts.values())
            tied = sorted(letter for letter, n in counts.items() if n == best)
            answer = random.Random(f"{seed}:{item.id}:vote").choice(tied)
        status = "ok" if answer else "invalid"
        if not answer and errors[index] and not raws[index]:
            status = "prompt_too_long" if too_long[index] else "error"
        results.append(ChannelResult(
            status=status, answer=answer, raw="\n---\n".join(raws[index]) or None,
            prompt=texts[index], extraction_rule=f"majority of {dict(counts)}",
            solver_calls=k, error="; ".join(dict.fromkeys(errors[index])) or None,
            seconds=seconds[index],
            model_seconds=seconds[index], tokens_in=tokens[index][0], tokens_out=tokens[index][1]))
    return results
