"""The counterfactual inputs of a provenance audit: a seeded canned solver and permuted items.

A program's answer "comes from the solver" only if other solver replies would have changed it,
and "was computed from the item" only if it follows the option's text when the options move.
``CannedSolver`` answers a program's solver calls without a model (random ``judge`` scores,
random ``choose`` letters, ``ask`` replies drawn from the option texts and neutral sentences),
reproducibly for a seed; ``permute_options`` gives the item with its option texts moved to
other letters. ``programs/provenance.py`` reads the answers the program gives under them.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["NEUTRAL_REPLIES", "CannedSolver", "permute_options"]

# ask() replies beside the option texts and "The answer is X.": sentences that carry no answer,
# and the bare yes/no a condition on a reply may look for
NEUTRAL_REPLIES = ("I am not sure.", "It depends on the details of the question.",
                   "Let me think about this step by step.", "That is hard to say.",
                   "Yes.", "No.")


class CannedSolver:
    """Answers solver calls like ``run.assisted.SolverCalls``, within the same budget, with
    seeded random replies; ``calls`` counts each kind asked for."""

    def __init__(self, seed: str | int, letters: Sequence[str], choices: Sequence[str],
                 budget: int) -> None:
        self.rng = random.Random(f"cgr-canned/{seed}")
        self.letters, self.budget = list(letters), budget
        self.replies = [*map(str, choices), *(f"The answer is {letter}." for letter in letters),
                        *NEUTRAL_REPLIES]
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
            return {"value": self.rng.choice(self.replies)}
        return {"error": f"unknown call {kind[:80]!r}"}


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
