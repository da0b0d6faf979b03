"""The counterfactual inputs of a provenance audit: a seeded canned solver and permuted items.

A program's answer "comes from the solver" only if other solver replies would have changed it,
and "was computed from the item" only if it follows the option's text when the options move.
``CannedSolver`` answers a program's solver calls without a model (random ``judge`` scores,
random ``choose`` letters, ``ask`` replies drawn from the option texts and neutral sentences),
reproducibly for a seed (``CannedBackend`` is the same as a solver model, for ``cgr exec
--solver canned``); ``permute_options`` gives the item with its option texts moved to
other letters. ``programs/provenance.py`` reads the answers the program gives under them.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from ..models.base import Generation, GenerationRequest, Judgement, Progress

__all__ = ["NEUTRAL_REPLIES", "CannedBackend", "CannedSolver", "permute_options"]

# ask() replies beside the option texts and "The answer is X.": sentences that carry no answer
NEUTRAL_REPLIES = ("I am not sure.", "It depends on the details of the question.",
                   "Let me think about this step by step.", "That is hard to say.")


def _reply_kinds(letters: Sequence[str], choices: Sequence[str]) -> list[list[str]]:
    """ask() replies by kind, each kind as likely as another: an option's text, "The answer is
    X.", a sentence without an answer, a bare yes, a bare no (what a condition may look for)."""
    return [[str(c) for c in choices] or ["-"], [f"The answer is {x}." for x in letters] or ["-"],
            list(NEUTRAL_REPLIES), ["Yes."], ["No."]]


class CannedSolver:
    """Answers solver calls like ``run.assisted.SolverCalls``, within the same budget, with
    seeded random replies; ``calls`` counts each kind asked for."""

    def __init__(self, seed: str | int, letters: Sequence[str], choices: Sequence[str],
                 budget: int) -> None:
        self.rng = random.Random(f"cgr-canned/{seed}")
        self.letters, self.budget = list(letters), budget
        self.replies = _reply_kinds(letters, choices)
        self.made = 0
        self.calls: dict[str, int] = {}

    def __call__(self, message: Mapping[str, Any]) -> dict[str, Any]:
        if self.made >= self.budget:
            return {"error": "budget_exceeded"}
        self.made += 1
        kind = str(message.get("kind"))
        self.calls[kind] = self.calls.get(kind, 0) + 1
        if kind == "judge":
            return {"value": round(self.rng.random(), 6)}
        if kind == "choose":
            return {"value": self.rng.choice(self.letters)}
        if kind == "ask":
            return {"value": self.rng.choice(self.rng.choice(self.replies))}
        return {"error": f"unknown call {kind[:80]!r}"}


class CannedBackend:
    """A solver "model" with the canned solver's replies: runs a program with no model at all."""

    name = "canned"

    def __init__(self, letters: Sequence[str], choices: Sequence[str], seed: int = 0) -> None:
        self.seed = seed
        self.rng = random.Random(f"cgr-canned-backend/{seed}")
        self.replies = _reply_kinds(letters, choices)

    def generate(self, requests: Sequence[GenerationRequest], *, progress: Progress = False
                 ) -> list[Generation]:
        return [Generation(self.rng.choice(self.rng.choice(self.replies)), tokens_in=0,
                           tokens_out=0)
                for _ in requests]

    def judge(self, prompts: Sequence[str]) -> list[Judgement]:
        return [Judgement(round(self.rng.random(), 6)) for _ in prompts]

    def describe(self) -> dict[str, Any]:
        return {"backend": "canned", "seed": self.seed}


def permute_options(item: Mapping[str, Any], seed: str | int) -> tuple[dict[str, Any], list[int]]:
    """The item (as the sandbox gets it) with its option texts moved so that none keeps its
    letter (a seeded derangement), and ``order``: new position -> original position."""
    choices = list(item["choices"])
    rng = random.Random(f"cgr-permute/{seed}")
    order = list(range(len(choices)))
    if len(choices) > 1:
        while any(new == old for new, old in enumerate(order)):
            rng.shuffle(order)
    moved = dict(item)
    moved["choices"] = [choices[old] for old in order]
    return moved, order
